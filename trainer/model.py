"""A registered backbone with its classifier swapped for a new species head, and the modes
that decide which of its parameters train."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainer.errors import TrainingError
from trainer.registry import Arch, get_arch, imagenet_state

MODES = ("frozen", "finetune", "full")


class ShoalNet(nn.Module):
    """``head(body(x))``: ``body`` returns pooled features, ``head`` is the species layer."""

    def __init__(self, arch: Arch, num_classes: int) -> None:
        super().__init__()
        self.arch_name = arch.name
        self.body = arch.build()
        old = getattr(self.body, arch.head)
        self.feature_dim = old.in_features
        setattr(self.body, arch.head, nn.Identity())
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _load_body(model: ShoalNet, arch: Arch, state: dict[str, torch.Tensor], origin: str) -> None:
    state = {k: v for k, v in state.items() if not k.startswith(f"{arch.head}.")}
    try:
        model.body.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise TrainingError(f"weights {origin} do not fit {arch.name}: {exc}") from exc
    missing = [k for k in model.body.state_dict() if k not in state]
    if missing:
        raise TrainingError(
            f"weights {origin} do not fit {arch.name}: {len(missing)} tensors missing "
            f"(first: {missing[0]}); is it a checkpoint of another architecture?"
        )


def weights_from_path(path: Path, arch: Arch) -> dict[str, torch.Tensor]:
    """A plain state dict of the library model, or a Shoal checkpoint of the same arch."""
    if not path.is_file():
        raise TrainingError(f"weights file {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise TrainingError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(blob, dict) and "model" in blob and "arch" in blob:
        if blob["arch"] != arch.name:
            raise TrainingError(
                f"{path} is a checkpoint of {blob['arch']}, not {arch.name}"
            )
        return {k[len("body."):]: v for k, v in blob["model"].items() if k.startswith("body.")}
    if not isinstance(blob, dict):
        raise TrainingError(f"{path} holds no state dict")
    return blob


def build_model(arch_name: str, num_classes: int, weights: str, seed: int = 0) -> ShoalNet:
    """``weights``: "imagenet", "none" (random, seeded) or a path to a state dict/checkpoint."""
    arch = get_arch(arch_name)
    torch.manual_seed(seed)
    model = ShoalNet(arch, num_classes)
    if weights == "imagenet":
        _load_body(model, arch, imagenet_state(arch), "imagenet")
    elif weights != "none":
        _load_body(model, arch, weights_from_path(Path(weights), arch), weights)
    return model


def set_mode(model: ShoalNet, mode: str) -> list[nn.Parameter]:
    """Freeze what the mode keeps fixed; returns the parameters that train."""
    if mode not in MODES:
        raise TrainingError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    arch = get_arch(model.arch_name)
    for name, param in model.body.named_parameters():
        param.requires_grad = mode == "full" or (
            mode == "finetune" and name.startswith(arch.last_stage)
        )
    for param in model.head.parameters():
        param.requires_grad = True
    return [p for p in model.parameters() if p.requires_grad]


def body_train_mode(model: ShoalNet, mode: str) -> None:
    """Train mode for what trains; frozen parts keep their BatchNorm statistics (eval mode)."""
    model.train()
    if mode == "full":
        return
    prefixes = get_arch(model.arch_name).last_stage if mode == "finetune" else ()
    for name, module in model.body.named_modules():
        module.train(bool(name) and f"{name}.".startswith(prefixes))

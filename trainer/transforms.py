"""The study's transforms, one small class per mode (after torchvision's references presets).

Each preset has a ``spec``: a plain dict that is stored in checkpoints and hashed into the
feature-cache key, so a changed transform never reuses stale features.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2 as T

FITS = ("crop", "whole")  # how the evaluation transform frames an image
TTAS = ("none", "hflip")  # test-time augmentation: none, or the mean with the mirror image


class EvalPreset:
    """Validation (and prediction): ``fit="crop"`` resizes the short side to ``resize`` and
    centre-crops ``crop`` (the study's); ``fit="whole"`` resizes the whole image to
    ``crop`` x ``crop``, so nothing is cut off (a long fish keeps its head and tail).

    ``tta="hflip"`` asks whoever runs the model to average its logits over the image and its
    mirror image (``TTA.logits``); the transform itself returns the unmirrored tensor, and
    mirroring that tensor equals transforming the mirrored image (both fits are symmetric, up
    to a pixel of centring)."""

    def __init__(  # type: ignore[no-untyped-def]
        self, crop: int = 224, resize: int = 256, mean=None, std=None, fit: str = "crop",
        tta: str = "none",
    ) -> None:
        if fit not in FITS:
            raise ValueError(f"eval fit must be one of {', '.join(FITS)}, not {fit!r}")
        if tta not in TTAS:
            raise ValueError(f"tta must be one of {', '.join(TTAS)}, not {tta!r}")
        self.tta = tta
        self.spec: dict[str, Any] = {
            "kind": "eval", "resize": resize, "crop": crop, "mean": list(mean), "std": list(std),
            "fit": fit, "tta": tta,
        }
        frame = ([T.Resize(resize, antialias=True), T.CenterCrop(crop)] if fit == "crop"
                 else [T.Resize((crop, crop), antialias=True)])
        self.transform = T.Compose([
            T.ToImage(),
            *frame,
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean, std),
        ])

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> EvalPreset:
        """The preset a checkpoint describes (checkpoints older than fit/tta: crop, none)."""
        return cls(spec["crop"], spec["resize"], spec["mean"], spec["std"],
                   spec.get("fit", "crop"), spec.get("tta", "none"))

    @property
    def feature_spec(self) -> dict[str, Any]:
        """What decides a view's pixels, for the feature-cache key: TTA does not (the mirror
        view is cached as a view of its own)."""
        return {k: v for k, v in self.spec.items() if k != "tta"}

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.transform(img)


def tta_logits(model: torch.nn.Module, x: torch.Tensor, tta: str) -> torch.Tensor:
    """``model(x)``, averaged with ``model`` of the mirrored batch when ``tta == "hflip"``."""
    logits = model(x)
    if tta == "hflip":
        logits = (logits + model(x.flip(-1))) / 2
    return logits


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
    resize = round(crop / float(hyper.get("crop_ratio", 224 / 256)))
    train = TrainPreset(
        crop, arch_mean, arch_std, scale=(float(hyper.get("min_scale", 0.08)), 1.0),
        jitter=float(hyper.get("jitter", 0.4)),
    )
    evaluation = EvalPreset(crop, resize, arch_mean, arch_std,
                            fit=str(hyper.get("eval_fit", "crop")),
                            tta=str(hyper.get("tta", "none")))
    return train, evaluation

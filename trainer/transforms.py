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
# test-time augmentation: none; the mean with the mirror image; or the mean over the mirror
# pair and ten crops (five of the image resized to CROPS_SCALE x the input, and their mirrors)
TTAS = ("none", "hflip", "crops")
CROPS_SCALE = 288 / 224


class EvalPreset:
    """Validation (and prediction): ``fit="crop"`` resizes the short side to ``resize`` and
    centre-crops ``crop`` (the study's); ``fit="whole"`` resizes the whole image to
    ``crop`` x ``crop``, so nothing is cut off (a long fish keeps its head and tail).

    With TTA the preset returns every test-time view at once (``views``), over which
    ``tta_logits`` averages the model's logits: ``tta="hflip"`` the framed image and its mirror
    (mirroring the tensor equals transforming the mirrored image: both fits are symmetric, up to
    a pixel of centring), [2, C, H, W]; ``tta="crops"`` those two, then the five crops (corners
    and centre) of the image resized to ``CROPS_SCALE`` times the input size, each followed by
    its mirror, [12, C, H, W]."""

    def __init__(  # type: ignore[no-untyped-def]
        self, crop: int = 224, resize: int = 256, mean=None, std=None, fit: str = "crop",
        tta: str = "none", crops_resize: int | None = None,
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
        self.crops = None
        if tta == "crops":
            self.spec["crops_resize"] = crops_resize or round(crop * CROPS_SCALE)
            self.crops = T.Compose([T.ToImage(), T.Resize(self.spec["crops_resize"],
                                                          antialias=True),
                                    T.FiveCrop(crop)])
        frame = ([T.Resize(resize, antialias=True), T.CenterCrop(crop)] if fit == "crop"
                 else [T.Resize((crop, crop), antialias=True)])
        self.normalise = T.Compose([T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)])
        self.transform = T.Compose([T.ToImage(), *frame, self.normalise])

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> EvalPreset:
        """The preset a checkpoint describes (checkpoints older than fit/tta: crop, none)."""
        return cls(spec["crop"], spec["resize"], spec["mean"], spec["std"],
                   spec.get("fit", "crop"), spec.get("tta", "none"), spec.get("crops_resize"))

    @property
    def feature_spec(self) -> dict[str, Any]:
        """What decides a view's pixels, for the feature-cache key: the mirror is cached as a
        view of its own, so "none" and "hflip" share a cache; "crops" adds its crop scale."""
        return {k: v for k, v in self.spec.items() if k != "tta"}

    @property
    def n_views(self) -> int:
        return {"none": 1, "hflip": 2, "crops": 12}[self.tta]

    def views(self, img: Image.Image) -> torch.Tensor:
        """Every test-time view of ``img``, [n_views, C, H, W]; a linear head's logits averaged
        over them are what ``tta_logits`` computes."""
        x = self.transform(img)
        if self.tta == "none":
            return x[None]
        out = [x, x.flip(-1)]
        if self.crops is not None:
            for crop in self.crops(img):
                crop = self.normalise(crop)
                out += [crop, crop.flip(-1)]
        return torch.stack(out)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """The model's input: [C, H, W], or with TTA every view, [n_views, C, H, W]."""
        return self.transform(img) if self.tta == "none" else self.views(img)


def tta_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` for a batch of images, [B, C, H, W]; for a batch of view stacks (TTA),
    [B, V, C, H, W], each image's logits averaged over its views."""
    if x.dim() == 4:
        return model(x)
    b, v = x.shape[:2]
    return model(x.flatten(0, 1)).view(b, v, -1).mean(1)


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

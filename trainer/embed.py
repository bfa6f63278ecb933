"""A frozen backbone's view of catalog images for curation, through the feature cache: each
image's pooled features and its mirror image's (the eval cache's views 0 and ``MIRROR``), and
what the backbone's own ImageNet classifier makes of them.

The transform is the recipe's evaluation transform (resize, centre crop), so a training run of
the same backbone shares view 0 and curation only adds the mirror.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainer.data import Record
from trainer.errors import TrainingError
from trainer.features import MIRROR
from trainer.model import build_model
from trainer.registry import get_arch, imagenet_state
from trainer.runs import RECIPE
from trainer.train import fast_features
from trainer.transforms import presets

Progress = Callable[[str, int, int], None]

# ImageNet-1k classes that are fish: tench .. stingray, barracouta .. puffer
IMAGENET_FISH = (0, 1, 2, 3, 4, 5, 6, 389, 390, 391, 392, 393, 394, 395, 396, 397)
EMBED_HYPER: dict[str, Any] = {**RECIPE, "tta": "hflip"}
# curation's label ensemble: each EfficientNet-Lite at its own input size, framed two ways (the
# centre crop, and the whole picture squeezed square, which keeps a long fish's head and tail);
# on web-20 out-of-fold heads on the six joined were right 66% of the time, Lite0 alone 54%
ENSEMBLE = (("efficientnet_lite0", 224), ("efficientnet_lite1", 240), ("efficientnet_lite2", 260))
FRAMINGS = ("crop", "whole")


@dataclass
class Embedding:
    records: list[Record]
    views: np.ndarray  # [n, 2, dim]: the framed image and its mirror, fp32
    failed: list[tuple[Record, str]]

    def mirror_invariant(self) -> np.ndarray:
        """[n, dim]: the mean of an image's and its mirror's features, L2-normalised, so an
        image and its flipped copy map to the same point."""
        mean = self.views.mean(1)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def embed(records: Sequence[Record], arch: str = "efficientnet_lite0",
          weights: str = "imagenet", hyper: dict[str, Any] | None = None,
          progress: Progress | None = None, chunk: int = 256) -> Embedding:
    """Features of ``records`` (computed once, then read from the cache). Unreadable images are
    left out and listed in ``failed``; the rest keep their order."""
    hyper = {**EMBED_HYPER, **(hyper or {}), "tta": "hflip", "feature_layers": 1,
             "feature_norm": "none"}
    spec = get_arch(arch)
    train_tf, eval_tf = presets(spec.mean, spec.std, hyper)
    features = fast_features(arch, weights, hyper, train_tf, eval_tf)
    model = build_model(arch, 1, weights, int(hyper["seed"]))
    model.eval()
    kept: list[Record] = []
    failed: list[tuple[Record, str]] = []
    records = list(records)
    for start in range(0, len(records), chunk):
        part = records[start:start + chunk]
        try:
            features.fill(model, [], part, 1)
            kept += part
        except TrainingError:  # find the unreadable ones; the rest are cached meanwhile
            for record in part:
                try:
                    features.fill(model, [], [record], 1)
                    kept.append(record)
                except TrainingError as exc:
                    failed.append((record, str(exc)))
        if progress:
            progress("features", min(start + chunk, len(records)), len(records))
    if not kept:
        return Embedding([], np.zeros((0, 2, model.feature_dim), np.float32), failed)
    views = features.load_eval(kept, [0, MIRROR]).numpy().astype(np.float32)
    return Embedding(kept, views, failed)


def ensemble_features(records: Sequence[Record], hyper: dict[str, Any] | None = None,
                      progress: Progress | None = None) -> np.ndarray:
    """[n, sum of dims]: the mirror-invariant features of ``records`` under every backbone of
    ``ENSEMBLE`` and framing of ``FRAMINGS`` (ImageNet weights, through the feature cache),
    each unit length, joined, unit length again. ``records`` must be readable (``embed``'s
    kept ones); an ``image_size`` in ``hyper`` overrides every backbone's own."""
    parts = []
    for arch, size in ENSEMBLE:
        for fit in FRAMINGS:
            view = {"image_size": size, **(hyper or {}), "eval_fit": fit}
            emb = embed(records, arch, "imagenet", view, progress=(
                (lambda _s, d, t, name=f"features {arch[-5:]} {fit}": progress(name, d, t))
                if progress else None))
            if emb.failed:
                raise TrainingError(f"{len(emb.failed)} image(s) could not be read for "
                                    f"{arch}: {emb.failed[0][1]}")
            parts.append(emb.mirror_invariant())
    joined = np.concatenate(parts, 1)
    return joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-12)


def imagenet_fish_probability(views: np.ndarray, arch: str = "efficientnet_lite0") -> np.ndarray:
    """[n]: the probability mass the backbone's ImageNet classifier gives its fish classes,
    averaged over the views (the features are that classifier's input); for a feature
    ensemble, averaged over its members too, each reading its own part of the features."""
    spec = get_arch(arch)
    state = imagenet_state(spec)
    heads = ([f"members.{m}.{get_arch(m).head}" for m in spec.members] if spec.members
             else [spec.head])
    x = torch.from_numpy(np.ascontiguousarray(views, dtype=np.float32))
    probs, start = [], 0
    for head in heads:
        weight, bias = state[f"{head}.weight"].float(), state[f"{head}.bias"].float()
        part = x[..., start:start + weight.shape[1]]
        start += weight.shape[1]
        probs.append((part @ weight.T + bias).softmax(-1).mean(1))
    return torch.stack(probs).mean(0)[:, list(IMAGENET_FISH)].sum(1).numpy()

"""Choosing a recipe honestly: k-fold cross-validation on the training split only.

The validation split is never read while choosing: every candidate recipe is trained k times
on k-1 folds of the training images and scored on the fold it left out; the recipe with the
best mean held-out accuracy (then the lowest held-out loss) wins, and only then is it trained
on the whole training split and scored once on validation.

The fast path makes this cheap: the frozen backbone's views of the training images are
computed once per transform (``ViewFeatures``), and each candidate only trains the linear head
on cached features, with the same loop (``FeatureLoop``) a run uses. Candidates that differ
only in their transforms share the cached augmented views (the eval and training transforms
have separate caches).

    selection = select_recipe(source, "efficientnet_lite0", "imagenet")
    create_run(session, dataset=..., arch=..., **selection.best)
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainer.data import DatasetSource, Record
from trainer.errors import TrainingError
from trainer.features import ViewFeatures
from trainer.loops import FeatureLoop
from trainer.model import build_model, head_input
from trainer.registry import get_arch
from trainer.runs import RECIPE
from trainer.train import fast_features
from trainer.transforms import presets

Progress = Callable[[str, int, int], None]

# What the search varies; a tuple key varies its names together. Epochs and learning rate go
# in pairs (a long run at the study's 1e-4 is slow to gain anything, a short one at 3e-3 noisy).
SPACE: dict[str | tuple[str, ...], list[Any]] = {
    "eval_fit": ["crop", "whole"],
    "crop_ratio": [0.875, 1.0],
    "tta": ["none", "hflip", "crops"],
    "views": [1, 8],
    "min_scale": [0.08, 0.25],
    ("epochs", "lr"): [(10, 1e-4), (30, 1e-3), (60, 1e-3), (30, 3e-3)],
    "label_smoothing": [0.0, 0.1],
}

# Shoal's best recipe for a frozen base: what select_recipe chose from SPACE by 5-fold
# cross-validation on web-20's training split (645 images; EfficientNet-Lite0, ImageNet
# weights): cv accuracy 0.682, against 0.451 for the study's 10 epochs at 1e-4 (docs/trainer.md).
# Multi-layer features did not beat it in the same cross-validation (its transforms, 1-4 layers,
# norm none or l2, 30 epochs at 1e-3 or 60 at 1e-3 or 3e-4): best 0.674 (3 layers, l2, 60 at
# 3e-4), 4 layers 0.628-0.661, so the head reads the pooled output alone. Then "crops" TTA
# (the mirror pair plus ten crops) beat "hflip" on the same folds: cv 0.698-0.701 against
# 0.645-0.650 (head seeds 0-2, bf16 and fp32 features, web-20 as imported on 2026-11-28).
BEST_RECIPE: dict[str, Any] = {
    "eval_fit": "crop",
    "crop_ratio": 1.0,  # short side to 224, centre crop 224: more of the fish than 224 of 256
    "tta": "crops",
    "views": 8,
    "min_scale": 0.25,
    "epochs": 30,
    "lr": 1e-3,
    "label_smoothing": 0.0,
    "feature_layers": 1,
    "feature_norm": "none",
}

# hyperparameters that decide the pixels of a view, hence which feature caches serve it
TRANSFORM_KEYS = ("image_size", "crop_ratio", "eval_fit", "tta", "min_scale", "jitter")


def _normalise(hyper: dict[str, Any]) -> dict[str, Any]:
    """Settings that cannot matter are set to the recipe's, so equal recipes compare equal:
    one view has no augmented copies, and ``whole`` crops nothing."""
    out = dict(hyper)
    if int(out["views"]) == 1:
        out["min_scale"], out["jitter"] = RECIPE["min_scale"], RECIPE["jitter"]
    if out["eval_fit"] == "whole":
        out["crop_ratio"] = RECIPE["crop_ratio"]
    return out


def candidates(
    space: dict[str | tuple[str, ...], list[Any]] | None = None,
    base: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every combination of ``space`` over ``base`` (default: the study's recipe), with the
    ``fixed`` settings overriding it, without duplicates, in grid order."""
    space = SPACE if space is None else space
    keys = list(space)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for combo in itertools.product(*(space[k] for k in keys)):
        hyper = {**RECIPE, **(base or {})}
        for key, value in zip(keys, combo, strict=True):
            if isinstance(key, tuple):
                hyper.update(zip(key, value, strict=True))
            else:
                hyper[key] = value
        hyper = _normalise({**hyper, **(fixed or {})})
        ident = repr(sorted(hyper.items()))
        if ident not in seen:
            seen.add(ident)
            out.append(hyper)
    return out


def assign_folds(records: Sequence[Record], k: int, seed: int = 0) -> list[int]:
    """Stratified folds: each class's images in an order fixed by their sha256 (and the seed),
    dealt round-robin, so every fold holds about 1/k of each class."""
    order = sorted(
        range(len(records)),
        key=lambda i: (records[i].label,
                       hashlib.sha256(f"{seed}:{records[i].sha256}".encode()).hexdigest()),
    )
    folds = [0] * len(records)
    dealt: dict[int, int] = {}
    for i in order:
        label = records[i].label
        folds[i] = dealt.get(label, 0) % k
        dealt[label] = dealt.get(label, 0) + 1
    return folds


@dataclass
class Score:
    hyper: dict[str, Any]
    accuracy: float  # mean held-out accuracy over the folds (images pooled)
    loss: float  # mean held-out cross-entropy
    fold_accuracy: list[float]

    def as_dict(self, keys: Sequence[str] | None = None) -> dict[str, Any]:
        hyper = {k: self.hyper[k] for k in keys} if keys else self.hyper
        return {**hyper, "cv_accuracy": round(self.accuracy, 4), "cv_loss": round(self.loss, 4),
                "fold_accuracy": [round(a, 4) for a in self.fold_accuracy]}


@dataclass
class Selection:
    best: dict[str, Any]
    score: Score
    scores: list[Score]
    folds: int
    n_train: int
    seconds: float
    varied: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"best": self.best, "cv_accuracy": self.score.accuracy,
                "cv_loss": self.score.loss, "folds": self.folds, "n_train": self.n_train,
                "seconds": round(self.seconds, 1), "varied": self.varied,
                "scores": [s.as_dict(self.varied) for s in self.scores]}


def _varied(cands: Sequence[dict[str, Any]]) -> list[str]:
    return [k for k in cands[0] if len({repr(c[k]) for c in cands}) > 1]


@contextmanager
def one_thread() -> Iterator[None]:
    """A linear head's small matrix products lose more to thread hand-offs than they gain,
    most of all on a shared CPU: cross-validation trains heads on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cross_validate(
    pool: torch.Tensor, evals: torch.Tensor, labels: torch.Tensor, folds: Sequence[int],
    hyper: dict[str, Any], n_classes: int,
) -> Score:
    """Train the head on each k-1 folds (its views from ``pool``) for the recipe's epochs and
    score the last epoch's head on the held-out fold's evaluation features."""
    fold_of = torch.tensor(folds)
    seed = int(hyper["seed"])
    correct = 0
    loss_sum = 0.0
    fold_accuracy = []
    for fold in range(int(fold_of.max()) + 1):
        fit, held = fold_of != fold, fold_of == fold
        torch.manual_seed(seed)
        head = nn.Linear(pool.shape[-1], n_classes)
        optimizer = torch.optim.Adam(head.parameters(), lr=float(hyper["lr"]),
                                     weight_decay=float(hyper["weight_decay"]))
        loop = FeatureLoop(head, optimizer, pool[fit], labels[fit], evals[held], labels[held],
                           int(hyper["batch_size"]), seed, float(hyper["label_smoothing"]))
        for epoch in range(1, int(hyper["epochs"]) + 1):
            loop.train_epoch(epoch)
        stats = loop.evaluate()
        n = int(held.sum())
        correct += round(stats.accuracy * n)
        loss_sum += stats.loss * n
        fold_accuracy.append(stats.accuracy)
    return Score(hyper, correct / len(folds), loss_sum / len(folds), fold_accuracy)


def select_recipe(
    source: DatasetSource,
    arch: str,
    weights: str = "imagenet",
    *,
    space: dict[str | tuple[str, ...], list[Any]] | None = None,
    base: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
    folds: int = 5,
    progress: Progress | None = None,
) -> Selection:
    """Choose the recipe for a frozen ``arch`` on ``source`` by ``folds``-fold cross-validation
    on ``source.train`` alone; ``source.val`` is not read (not even its features)."""
    cands = candidates(space, base, fixed)
    if folds < 2:
        raise TrainingError("cross-validation needs at least 2 folds")
    counts = torch.bincount(torch.tensor([r.label for r in source.train]),
                            minlength=len(source.classes))
    if int(counts.min()) < folds:
        small = source.classes[int(counts.argmin())]
        raise TrainingError(f"class {small} has {int(counts.min())} training images: too few "
                            f"for {folds}-fold cross-validation")
    if any(not c.get("fast", True) for c in cands):
        raise TrainingError("recipe selection trains on cached features: it needs the fast "
                            "path")
    started = time.perf_counter()
    spec = get_arch(arch)
    train = list(source.train)
    labels = torch.tensor([r.label for r in train])
    fold_of = assign_folds(train, folds, int(cands[0]["seed"]))
    layers = max(head_input(h)[0] for h in cands)
    model = build_model(arch, len(source.classes), weights, int(cands[0]["seed"]), layers)
    groups: dict[str, list[dict[str, Any]]] = {}
    for hyper in cands:
        groups.setdefault(repr([hyper[k] for k in (*TRANSFORM_KEYS, "seed", "precision")]),
                          []).append(hyper)
    scores: list[Score] = []
    for group in groups.values():
        views = max(int(h["views"]) for h in group)
        train_tf, eval_tf = presets(spec.mean, spec.std, group[0])
        # one forward fills every layer any candidate of the group uses
        fast_features(arch, weights, {**group[0], "feature_layers": layers}, train_tf,
                      eval_tf).fill(model, train, [], views, progress=progress,
                                    workers=int(group[0].get("workers", 0)))
        loaded: dict[tuple[int, str], tuple[ViewFeatures, torch.Tensor, torch.Tensor]] = {}
        for hyper in group:
            reads = head_input(hyper)
            if reads not in loaded:
                features = fast_features(arch, weights, hyper, train_tf, eval_tf)
                loaded[reads] = (features, features.pool(train, views),
                                 features.evaluation(train))
            features, pool, evals = loaded[reads]
            pool = pool[:, :features.pool_width(int(hyper["views"]))]
            with one_thread():
                scores.append(cross_validate(pool, evals, labels, fold_of, hyper,
                                             len(source.classes)))
            if progress:
                progress("cross-validation", len(scores), len(cands))
    best = max(scores, key=lambda s: (s.accuracy, -s.loss))
    return Selection(best.hyper, best, scores, folds, len(train),
                     time.perf_counter() - started, _varied(cands))

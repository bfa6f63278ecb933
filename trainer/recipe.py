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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainer.data import DatasetSource, Record
from trainer.errors import TrainingError
from trainer.features import JoinedFeatures, ViewFeatures, one_thread
from trainer.loops import FeatureLoop, class_weights
from trainer.metrics import accuracy_interval
from trainer.model import build_model, head_input
from trainer.registry import get_arch
from trainer.runs import RECIPE, loader_workers
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
    """Stratified folds cut by duplicate group: the images sharing a split key (copies of one
    photo) always sit in the same fold. Each class's groups, in an order fixed by their key
    and the seed, go one by one to the fold holding the fewest images of that class so far,
    so every fold holds about 1/k of each class."""
    members: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        members.setdefault(record.key, []).append(i)

    def label_of(key: str) -> int:  # a group of two labels is stratified by its commonest one
        labels = [records[i].label for i in members[key]]
        return max(sorted(set(labels)), key=labels.count)

    order = sorted(members, key=lambda key: (
        label_of(key), hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()))
    folds = [0] * len(records)
    filled: dict[int, list[int]] = {}
    for key in order:
        sizes = filled.setdefault(label_of(key), [0] * k)
        fold = min(range(k), key=lambda f: (sizes[f], f))
        sizes[fold] += len(members[key])
        for i in members[key]:
            folds[i] = fold
    return folds


def groups_per_class(records: Sequence[Record], n_classes: int) -> list[int]:
    """How many distinct photos (duplicate groups) each class has."""
    seen: list[set[str]] = [set() for _ in range(n_classes)]
    for record in records:
        seen[record.label].add(record.key)
    return [len(keys) for keys in seen]


@dataclass
class Score:
    hyper: dict[str, Any]
    accuracy: float  # mean held-out accuracy over the folds (images pooled)
    loss: float  # mean held-out cross-entropy
    fold_accuracy: list[float]
    hits: list[bool] = field(default_factory=list)  # per image: right when held out

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
    # the figure to expect on photos nobody tuned on (nested cross-validation), when the
    # training split has enough distinct photos per class for it
    estimate: NestedEstimate | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"best": self.best, "cv_accuracy": self.score.accuracy,
                "cv_loss": self.score.loss, "folds": self.folds, "n_train": self.n_train,
                "seconds": round(self.seconds, 1), "varied": self.varied,
                "honest_estimate": self.estimate.as_dict() if self.estimate else None,
                "scores": [s.as_dict(self.varied) for s in self.scores]}


def _varied(cands: Sequence[dict[str, Any]]) -> list[str]:
    return [k for k in cands[0] if len({repr(c[k]) for c in cands}) > 1]


def fit_and_score(
    pool: torch.Tensor, evals: torch.Tensor, labels: torch.Tensor, fit: torch.Tensor,
    held: torch.Tensor, hyper: dict[str, Any], n_classes: int,
) -> tuple[int, float, torch.Tensor]:
    """Train a head on the ``fit`` rows' views for the recipe's epochs; the last epoch's
    (correct, summed cross-entropy, which held rows it got right) on the ``held`` rows'
    evaluation features."""
    seed = int(hyper["seed"])
    torch.manual_seed(seed)
    head = nn.Linear(pool.shape[-1], n_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=float(hyper["lr"]),
                                 weight_decay=float(hyper["weight_decay"]))
    weight = class_weights(labels[fit], n_classes, str(hyper.get("class_weight", "none")))
    loop = FeatureLoop(head, optimizer, pool[fit], labels[fit], evals[held], labels[held],
                       int(hyper["batch_size"]), seed, float(hyper["label_smoothing"]), weight)
    for epoch in range(1, int(hyper["epochs"]) + 1):
        loop.train_epoch(epoch)
    stats = loop.evaluate()
    right = stats.preds == stats.targets
    return int(right.sum()), stats.loss * int(held.sum()), right


def cross_validate(
    pool: torch.Tensor, evals: torch.Tensor, labels: torch.Tensor, folds: Sequence[int],
    hyper: dict[str, Any], n_classes: int,
) -> Score:
    """Train the head on each k-1 folds (its views from ``pool``) for the recipe's epochs and
    score the last epoch's head on the held-out fold's evaluation features."""
    fold_of = torch.tensor(folds)
    correct = 0
    loss_sum = 0.0
    fold_accuracy = []
    hits = torch.zeros(len(folds), dtype=torch.bool)
    for fold in range(int(fold_of.max()) + 1):
        held = fold_of == fold
        right, loss, hits[held] = fit_and_score(pool, evals, labels, ~held, held, hyper,
                                                n_classes)
        correct += right
        loss_sum += loss
        fold_accuracy.append(right / max(1, int(held.sum())))
    return Score(hyper, correct / len(folds), loss_sum / len(folds), fold_accuracy,
                 hits.tolist())


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
    counts = groups_per_class(source.train, len(source.classes))
    if min(counts) < folds:
        small = source.classes[counts.index(min(counts))]
        raise TrainingError(f"class {small} has {min(counts)} distinct training photos: too "
                            f"few for {folds}-fold cross-validation")
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
                                    workers=loader_workers(group[0]))
        loaded: dict[tuple[int, str], tuple[ViewFeatures | JoinedFeatures, torch.Tensor,
                                             torch.Tensor]] = {}
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


# What the nested estimate's inner selection chooses among: the settings that decided every
# selection so far (TTA, augmented views, training length), 8 recipes, so that five outer folds
# of three-fold selection cost minutes, not hours. The rest is BEST_RECIPE's.
NESTED_SPACE: dict[str | tuple[str, ...], list[Any]] = {
    "tta": ["hflip", "crops"],
    "views": [1, 8],
    ("epochs", "lr"): [(30, 1e-3), (60, 1e-3)],
}

# The baseline every recipe must beat: a logistic-regression head on the frozen backbone's
# pooled features of the framed image, trained to convergence, no augmentation, no TTA.
LINEAR_PROBE: dict[str, Any] = {
    "views": 1, "tta": "none", "epochs": 30, "lr": 1e-3, "label_smoothing": 0.0,
    "feature_layers": 1, "feature_norm": "none",
}


@dataclass
class OuterFold:
    fold: int
    n_held: int
    correct: int
    chosen: dict[str, Any]  # the varied settings the inner selection chose
    inner_cv_accuracy: float

    def as_dict(self) -> dict[str, Any]:
        return {"fold": self.fold, "n_held": self.n_held, "accuracy": round(
            self.correct / max(1, self.n_held), 4), "chosen": self.chosen,
            "inner_cv_accuracy": round(self.inner_cv_accuracy, 4)}


@dataclass
class NestedEstimate:
    """Accuracy on photos no choice was tuned on: in each outer fold the recipe is chosen by
    cross-validation inside the other folds, trained on them and scored once on the fold."""

    correct: int
    n: int
    interval: tuple[float, float]
    outer: list[OuterFold]
    inner_folds: int
    probe_correct: int  # the linear probe on the same outer folds
    probe_interval: tuple[float, float]
    seconds: float
    # per training image, in ``source.train`` order: whether the nested choice (the probe)
    # got it right when its fold was held out, for paired comparisons on the same folds
    hits: list[bool] = field(default_factory=list)
    probe_hits: list[bool] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def probe_accuracy(self) -> float:
        return self.probe_correct / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": round(self.accuracy, 4), "n": self.n,
                "interval": [round(x, 4) for x in self.interval],
                "probe_accuracy": round(self.probe_accuracy, 4),
                "probe_interval": [round(x, 4) for x in self.probe_interval],
                "outer_folds": len(self.outer), "inner_folds": self.inner_folds,
                "folds": [f.as_dict() for f in self.outer], "seconds": round(self.seconds, 1),
                "hits": "".join("1" if h else "0" for h in self.hits),
                "probe_hits": "".join("1" if h else "0" for h in self.probe_hits)}


def _features(
    arch: str, weights: str, hyper: dict[str, Any], model: Any, records: Sequence[Record],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(training pool, evaluation features) of ``records`` under ``hyper``'s transforms."""
    spec = get_arch(arch)
    train_tf, eval_tf = presets(spec.mean, spec.std, hyper)
    views = int(hyper["views"])
    features = fast_features(arch, weights, hyper, train_tf, eval_tf)
    features.fill(model, records, [], views, workers=loader_workers(hyper))
    pool = features.pool(records, views)[:, :features.pool_width(views)]
    return pool, features.evaluation(records)


def nested_estimate(
    source: DatasetSource,
    arch: str,
    weights: str = "imagenet",
    *,
    space: dict[str | tuple[str, ...], list[Any]] | None = None,
    base: dict[str, Any] | None = None,
    fixed: dict[str, Any] | None = None,
    outer: int = 5,
    inner: int = 3,
    progress: Progress | None = None,
) -> NestedEstimate:
    """Nested cross-validation over ``source.train`` (folds cut by duplicate group); the
    validation split is not read. Beside it, the linear probe on the same outer folds."""
    started = time.perf_counter()
    space = NESTED_SPACE if space is None else space
    base = {**BEST_RECIPE, **(base or {})}
    counts = groups_per_class(source.train, len(source.classes))
    if min(counts) < outer:
        small = source.classes[counts.index(min(counts))]
        raise TrainingError(f"class {small} has {min(counts)} distinct training photos: too "
                            f"few for {outer} outer folds")
    train = list(source.train)
    labels = torch.tensor([r.label for r in train])
    seed = int(candidates(space, base, fixed)[0]["seed"])
    fold_of = torch.tensor(assign_folds(train, outer, seed))
    model = build_model(arch, len(source.classes), weights, seed, 1)
    folds: list[OuterFold] = []
    hits = torch.zeros(len(train), dtype=torch.bool)
    for fold in range(outer):
        held = fold_of == fold
        inner_source = DatasetSource(source.classes, [r for r, h in zip(train, held.tolist(),
                                                                         strict=True) if not h],
                                     [], source.manifest_sha256, name=source.name)
        selection = select_recipe(inner_source, arch, weights, space=space, base=base,
                                  fixed=fixed, folds=inner)
        pool, evals = _features(arch, weights, selection.best, model, train)
        with one_thread():
            correct, _, hits[held] = fit_and_score(pool, evals, labels, ~held, held,
                                                   selection.best, len(source.classes))
        folds.append(OuterFold(fold, int(held.sum()), correct,
                               {k: selection.best[k] for k in selection.varied},
                               selection.score.accuracy))
        if progress:
            progress("nested cross-validation", fold + 1, outer)
    probe = candidates({}, {**base, **LINEAR_PROBE}, fixed)[0]
    pool, evals = _features(arch, weights, probe, model, train)
    with one_thread():
        probe_score = cross_validate(pool, evals, labels, fold_of.tolist(), probe,
                                     len(source.classes))
    n = len(train)
    correct = sum(f.correct for f in folds)
    probe_correct = sum(probe_score.hits)
    return NestedEstimate(correct, n, accuracy_interval(correct, n), folds, inner,
                          probe_correct, accuracy_interval(probe_correct, n),
                          time.perf_counter() - started, hits.tolist(), probe_score.hits)

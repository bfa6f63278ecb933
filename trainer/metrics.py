"""Confusion matrix, per-class precision/recall/F1, accuracy intervals, and the
confusion-matrix picture."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class ClassScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


def accuracy_interval(correct: int, n: int, level: float = 0.95, draws: int = 10_000,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of an accuracy of ``correct`` out of ``n`` images.

    Resampling n images with replacement from a 0/1 vector with ``correct`` ones is a
    binomial draw, so the bootstrap needs only the two counts (and is the same everywhere for
    the same seed). 2 points on 83 images is well inside such an interval."""
    if n <= 0:
        return (0.0, 0.0)
    import numpy as np

    rng = np.random.default_rng(seed)
    means = rng.binomial(n, correct / n, size=draws) / n
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))


def paired_difference(a: Sequence[bool], b: Sequence[bool], level: float = 0.95,
                      draws: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Accuracy of ``a`` minus that of ``b`` scored on the same images (per image: right or
    not), with a percentile bootstrap interval that resamples images, so both sides move
    together: far narrower than two separate intervals when the two mostly agree."""
    import numpy as np

    if len(a) != len(b) or not len(a):
        raise ValueError("a paired difference needs the same images on both sides")
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(draws, len(diff)))].mean(1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(diff.mean()), float(lo), float(hi)


def confusion_matrix(targets: torch.Tensor, preds: torch.Tensor, n: int) -> torch.Tensor:
    """Rows are true classes, columns predicted ones."""
    flat = targets.long() * n + preds.long()
    return torch.bincount(flat, minlength=n * n).reshape(n, n)


def class_scores(confusion: torch.Tensor, classes: list[str]) -> list[ClassScore]:
    cm = confusion.double()
    tp = cm.diag()
    predicted = cm.sum(0)
    support = cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), 0.0)
    recall = torch.where(support > 0, tp / support.clamp(min=1), 0.0)
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), 0.0)
    return [
        ClassScore(c, float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
        for i, c in enumerate(classes)
    ]


def plot_confusion(confusion: list[list[int]], classes: list[str], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90, fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = max((max(row) for row in confusion), default=0) or 1
    for i, row in enumerate(confusion):
        for j, value in enumerate(row):
            if value:
                colour = "white" if value > peak / 2 else "black"
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

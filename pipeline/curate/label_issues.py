"""Label issues found honestly: every image is scored by a head that never saw it.

The pool is cut into k folds by split key (``catalog.splits.fold_of``), so the copies of a
duplicate group share a fold; a logistic head is fit on the cached backbone features of the
other k-1 folds and predicts the held-out one. cleanlab reads those out-of-fold probabilities
(confident learning: ``find_label_issues`` estimates the number of label errors and flags
that many of the lowest label quality; ``get_label_quality_scores``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from catalog.splits import fold_of
from pipeline.curate import DEFAULT_FOLDS
from pipeline.errors import UsageError

MIN_PER_CLASS = 2  # a class with fewer images cannot be judged: nobody else shows what it is
HEAD_C = 1.0  # inverse L2 strength of the logistic head on unit-norm features (x SCALE)
SCALE = 16.0  # unit-norm features times this: logits wide enough for confident probabilities


class PoolTooSmall(UsageError):
    """The pool cannot be cut into the folds asked for."""


@dataclass
class OutOfFold:
    classes: list[str]  # the judged classes, columns of ``probs``
    judged: np.ndarray  # [n] bool: the image's class has at least MIN_PER_CLASS images
    probs: np.ndarray  # [n, len(classes)]: out-of-fold probabilities (rows of judged images)
    folds: np.ndarray  # [n] the fold of each image

    def given(self, labels: Sequence[str]) -> np.ndarray:
        """[n] index of each image's label among ``classes`` (-1: not judged)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index.get(label, -1) for label in labels])


def assign_folds(keys: Sequence[str], k: int) -> np.ndarray:
    if k < 2:
        raise PoolTooSmall(f"k-fold needs at least 2 folds, not {k}")
    folds = np.array([fold_of(key, k) for key in keys], dtype=np.int64)
    groups = len(set(keys))
    missing = sorted(set(range(k)) - set(folds.tolist()))
    if groups < k or missing:
        raise PoolTooSmall(
            f"the pool has {len(keys)} images in {groups} duplicate groups: too few for "
            f"{k}-fold out-of-fold scores (fold {missing[0] if missing else k - 1} would be "
            f"empty); add images or use --folds {max(2, min(groups, k - 1))}")
    return folds


def fit_head(x: np.ndarray, y: np.ndarray, seed: int = 0) -> LogisticRegression:
    """Multinomial logistic regression (lbfgs) on one BLAS thread: on a shared CPU its small
    products lose far more to thread hand-offs than they gain (20x measured on 2 cores)."""
    head = LogisticRegression(C=HEAD_C, max_iter=2000, random_state=seed)
    with threadpool_limits(1):
        return head.fit(x * SCALE, y)


def out_of_fold(features: np.ndarray, labels: Sequence[str], keys: Sequence[str],
                k: int = DEFAULT_FOLDS, seed: int = 0) -> OutOfFold:
    """Out-of-fold probabilities of every judged image: the head that scores an image's fold
    was fit on the other folds only. ``features``: [n, dim], unit norm."""
    folds = assign_folds(keys, k)
    counts = Counter(labels)
    classes = sorted(c for c, n in counts.items() if n >= MIN_PER_CLASS)
    if len(classes) < 2:
        raise PoolTooSmall(f"label scores need at least 2 species with {MIN_PER_CLASS} or more "
                           f"images; the pool has {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    judged = np.array([label in index for label in labels])
    y = np.array([index.get(label, -1) for label in labels])
    probs = np.zeros((len(labels), len(classes)), dtype=np.float64)
    for fold in range(k):
        fit = judged & (folds != fold)
        held = judged & (folds == fold)
        if not held.any():
            continue
        present = np.unique(y[fit])
        if len(present) == 1:  # one class left to learn from: it is all the head can say
            probs[np.ix_(held, present)] = 1.0
            continue
        head = fit_head(features[fit], y[fit], seed)
        with threadpool_limits(1):
            probs[np.ix_(held, head.classes_)] = head.predict_proba(features[held] * SCALE)
    return OutOfFold(classes, judged, probs, folds)


@dataclass
class LabelScores:
    quality: np.ndarray  # [n] cleanlab label quality of the given label (nan: not judged)
    issue: np.ndarray  # [n] bool: cleanlab finds the given label an issue
    suggested: list[str | None]  # most probable other species, out of fold
    suggested_probability: np.ndarray  # [n]
    given_probability: np.ndarray  # [n] (nan: not judged)


def score_labels(oof: OutOfFold, labels: Sequence[str]) -> LabelScores:
    n = len(labels)
    y = oof.given(labels)
    quality = np.full(n, np.nan)
    issue = np.zeros(n, dtype=bool)
    given_p = np.full(n, np.nan)
    rows = np.flatnonzero(oof.judged)
    if len(rows):
        probs = oof.probs[rows]
        # cleanlab wants every class seen; judged classes have >= MIN_PER_CLASS images each
        quality[rows] = get_label_quality_scores(y[rows], probs, method="self_confidence")
        # cleanlab estimates how many labels are wrong (confident joint) and flags that many
        # of the lowest self-confidence: the flagged set is the head of the score order
        issue[rows] = find_label_issues(y[rows], probs, filter_by="low_self_confidence")
        given_p[rows] = probs[np.arange(len(rows)), y[rows]]
    top = oof.probs.argmax(1)
    suggested = [oof.classes[t] if oof.judged[i] or oof.probs[i].any() else None
                 for i, t in enumerate(top)]
    return LabelScores(quality, issue, suggested, oof.probs.max(1), given_p)

"""The train/val split of a dataset version: a pure function of each image's split key.

The rule (``RULE``):

1. An image's *split key* is its duplicate group's ``split_key`` (fixed when the group is
   born), or its own sha256 when it is in no group. Every member of a group has the same key,
   so a group never spans train and val.
2. ``fraction(key)`` is the first 8 bytes of ``sha256(key)`` read as a big-endian integer and
   divided by 2**64: uniform in [0, 1) and the same on every machine, in every version.
   A key is ``val`` when ``fraction(key) < val_ratio``, else ``train``.
3. A class with at least two images but no ``val`` key after step 2 gets one *promoted*: the
   key of that class with the smallest fraction, among the keys that (a) hold images of that
   class only, (b) have never been in any earlier dataset version, and (c) leave the class at
   least one train image. If no key qualifies the class keeps no val image.
4. A promoted key is recorded on its version (``params["promoted_keys"]``) and stays ``val``
   in every later version created with the same ``val_ratio``.

Why this is stable: steps 1-2 depend on the key alone. A promotion only ever moves a key that
no earlier version contains (3b), so nothing an earlier version holds changes split; and once
promoted it is pinned (4), so later versions keep it in val. Stability is promised between
versions with the same ``val_ratio``: a larger ratio moves keys from train to val only.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import DuplicateGroup, Image

RULE = "sha256-threshold-v1"
TRAIN, VAL = "train", "val"
SPLITS = (TRAIN, VAL)
CHUNK = 5000


def fraction(key: str) -> float:
    """The first 8 bytes of sha256(key) over 2**64: uniform in [0, 1), the same everywhere."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def hash_split(key: str, val_ratio: float) -> str:
    """Step 2 of the rule: a pure function of the key."""
    return VAL if fraction(key) < val_ratio else TRAIN


def split_key_for(session: Session, image_ids: Iterable[int]) -> dict[int, str]:
    """Step 1 of the rule: each image's key, its duplicate group's, else its own sha256."""
    ids = sorted(set(image_ids))
    keys: dict[int, str] = {}
    for start in range(0, len(ids), CHUNK):
        for image_id, sha, group_key in session.execute(
            select(Image.id, Image.sha256, DuplicateGroup.split_key)
            .join(DuplicateGroup, DuplicateGroup.id == Image.duplicate_group_id, isouter=True)
            .where(Image.id.in_(ids[start:start + CHUNK]))
        ):
            keys[image_id] = group_key or sha
    return keys


@dataclass
class SplitPlan:
    splits: dict[str, str]  # split key -> train | val
    promoted: list[str]  # keys moved to val by step 3 in this plan

    def split_of(self, key: str) -> str:
        return self.splits[key]


def plan_splits(
    members: Iterable[tuple[str, str]],
    val_ratio: float,
    *,
    pinned_val: frozenset[str] | set[str] = frozenset(),
    already_used: Callable[[set[str]], set[str]] = lambda keys: set(),
) -> SplitPlan:
    """Decide the split of every key. ``members`` is one ``(label, key)`` pair per image;
    ``already_used(keys)`` answers which of ``keys`` some earlier version already contains."""
    per_pair = Counter(members)  # (label, key) -> images
    images_per_label: Counter[str] = Counter()
    key_labels: dict[str, list[str]] = {}
    for (label, key), n in per_pair.items():
        images_per_label[label] += n
        key_labels.setdefault(key, []).append(label)

    splits = {
        key: VAL if val_ratio > 0 and (key in pinned_val or fraction(key) < val_ratio) else TRAIN
        for key in key_labels
    }
    if val_ratio <= 0:
        return SplitPlan(splits, [])

    has_val = {
        label for key, labels in key_labels.items() if splits[key] == VAL for label in labels
    }
    lacking = sorted(
        label for label, n in images_per_label.items() if n >= 2 and label not in has_val
    )
    candidates: dict[str, list[str]] = {label: [] for label in lacking}
    for key, labels in key_labels.items():
        if len(labels) == 1 and labels[0] in candidates:
            candidates[labels[0]].append(key)
    used = already_used({k for keys in candidates.values() for k in keys})
    promoted: list[str] = []
    for label in lacking:
        for key in sorted(candidates[label], key=fraction):
            if key in used or per_pair[label, key] >= images_per_label[label]:
                continue
            splits[key] = VAL
            promoted.append(key)
            break
    return SplitPlan(splits, promoted)


def fold_of(key: str, k: int) -> int:
    """The cross-validation fold of a split key, 0..k-1: a pure function of the key like the
    split, so the copies of a duplicate group always share a fold. It reads bytes 8..15 of
    sha256(key), which ``fraction`` does not, so the folds are independent of train/val."""
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, not {k}")
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[8:16], "big") % k

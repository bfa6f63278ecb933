"""The fast path's feature cache: a frozen backbone's pooled features, computed once per image
and view, stored under ``<data dir>/features/<key>/``.

A key hashes architecture, weights, one transform, precision and the feature layer (the
classifier's input, ``out``, or one of the arch's taps, whose globally pooled output
``feature_layers`` > 1 appends); a file inside it is named by the image's sha256 and the view
index. Two caches per layer serve a run (``ViewFeatures``): the eval transform's, holding view 0
(the eval transform) and view 1 (its mirror image, for TTA), and the training transform's,
holding views 1..n-1, each augmented under a seed derived from the image and the view, so the
cache is the same whichever run fills it. Layers are cached apart, so runs with fewer layers
reuse the caches of runs with more (and the other way round). A feature ensemble's views
(``JoinedFeatures``) are its members' own caches side by side, so a member's features are
computed once, whether it runs alone or in an ensemble.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from trainer.data import Record, open_rgb
from trainer.fusion import folded_copy
from trainer.model import OUT, ShoalNet, join_layers

Progress = Callable[[str, int, int], None]

MIRROR = 1  # in an eval cache: the eval transform's view, mirrored


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` torch threads (0: leave the count as it is), restored
    after, so a worker process that runs other jobs keeps its own."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread() -> contextlib.AbstractContextManager[None]:
    """Small tensor work (a linear head's matrix products, one image's resize, crop and colour
    jitter) loses more to thread hand-offs than it gains, most of all on a shared CPU: on two
    busy cores, colour jitter of one 224 px image took 190 ms of CPU on two threads and 2 ms
    on one. Heads train, and images are transformed, on one thread."""
    return torch_threads(1)


def bf16_supported() -> bool:
    """bf16 pays off only with native support (AVX-512 BF16 or AMX); elsewhere it is emulated."""
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def resolve_precision(asked: str) -> str:
    if asked == "auto":
        return "bf16" if bf16_supported() else "fp32"
    if asked not in ("bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {asked!r}")
    return asked


def cache_key(arch: str, weights_id: str, spec: dict[str, Any], precision: str,
              layer: str = OUT) -> str:
    """The cache of one (backbone, transform, precision, feature layer); the classifier
    input's key is what it was before layers existed, so those caches stay valid."""
    what: dict[str, Any] = {"arch": arch, "weights": weights_id, "transform": spec,
                            "precision": precision}
    if layer != OUT:
        what["layer"] = layer
    blob = json.dumps(what, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def view_seed(sha256: str, view: int) -> int:
    return int(hashlib.sha256(f"{sha256}:{view}".encode()).hexdigest()[:15], 16)


class FeatureCache:
    def __init__(self, root: Path, key: str) -> None:
        self.dir = root / key

    def file(self, sha256: str, view: int) -> Path:
        return self.dir / sha256[:2] / f"{sha256}.v{view}.npy"

    def has(self, sha256: str, view: int) -> bool:
        return self.file(sha256, view).is_file()

    def load(self, sha256: str, view: int) -> np.ndarray:
        return np.load(self.file(sha256, view))

    def save(self, sha256: str, view: int, features: np.ndarray) -> None:
        final = self.file(sha256, view)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".part", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, features)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class EvalViews:
    """The evaluation cache's views (``EvalPreset.views``): 0 is the eval transform, ``MIRROR``
    its mirror image, then with "crops" TTA the crops and their mirrors. An image's views are
    asked for one after another: the last image's are kept, so it is decoded once."""

    def __init__(self, transform) -> None:  # type: ignore[no-untyped-def]
        self.transform = transform
        self.last: tuple[str, torch.Tensor] | None = None

    def __call__(self, record: Record, view: int) -> torch.Tensor:
        if self.last is None or self.last[0] != record.sha256:
            self.last = (record.sha256, self.transform.views(open_rgb(record)))
        return self.last[1][view]


class TrainViews:
    """The training cache's views 1..n-1: the training transform under a seed derived from
    the image and the view, so the cache is the same whichever run fills it. An image's views
    are asked for one after another: the last image is kept decoded, so its seven augmented
    views cost one decode, not seven."""

    def __init__(self, transform) -> None:  # type: ignore[no-untyped-def]
        self.transform = transform
        self.last: tuple[str, Image.Image] | None = None

    def __call__(self, record: Record, view: int) -> torch.Tensor:
        if self.last is None or self.last[0] != record.sha256:
            self.last = (record.sha256, open_rgb(record))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(record.sha256, view))
            return self.transform(self.last[1])


class Layers:
    """One cache per feature layer, all of the same transform, filled by the same forward."""

    def __init__(self, root: Path, arch: str, weights_id: str, spec: dict[str, Any],
                 precision: str, layers: Sequence[str]) -> None:
        self.caches = [FeatureCache(root, cache_key(arch, weights_id, spec, precision, layer))
                       for layer in layers]

    def has(self, sha256: str, view: int) -> bool:
        return all(cache.has(sha256, view) for cache in self.caches)

    def save(self, sha256: str, view: int, rows: Sequence[np.ndarray]) -> None:
        """Store the layers not yet cached; those already there stay as they are."""
        for cache, row in zip(self.caches, rows, strict=True):
            if not cache.has(sha256, view):
                cache.save(sha256, view, row)

    def load(self, records: Sequence[Record], views: Sequence[int]) -> list[torch.Tensor]:
        """Each layer's features as [len(records), len(views), dim]."""
        return [load_matrix(cache, records, views) for cache in self.caches]

    @property
    def keys(self) -> list[str]:
        return [cache.dir.name for cache in self.caches]


class MemberNet(nn.Module):
    """One member of a feature ensemble as its cache is filled: its pooled features alone."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.body(x)]


class _Todo(torch.utils.data.Dataset):
    def __init__(self, todo: Sequence[tuple[int, Record, int]], makers: Sequence) -> None:  # type: ignore[type-arg]
        self.todo, self.makers = todo, makers

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int) -> torch.Tensor:
        group, record, view = self.todo[i]
        return self.makers[group](record, view)


@torch.inference_mode()
def extract(
    model: ShoalNet | MemberNet,
    batch: torch.Tensor,
    precision: str,
) -> list[torch.Tensor]:
    """Backbone forward for feature extraction, each of the model's feature layers pooled:
    channels_last, bf16 autocast when asked."""
    batch = batch.contiguous(memory_format=torch.channels_last)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )
    with autocast:
        parts = model.layer_features(batch)
    return [p.float() for p in parts]


def fill_cache(
    model: ShoalNet | MemberNet,
    groups: Sequence[tuple[Layers, Callable[[Record, int], torch.Tensor],
                           Sequence[tuple[Record, int]]]],
    precision: str,
    batch_size: int = 32,
    progress: Progress | None = None,
    workers: int = 0,
) -> int:
    """Compute and store the features not yet cached; ``groups`` are (layer caches, view
    maker, wanted (record, view) pairs); ``model`` computes at least those layers, in their
    order. Returns how many (record, view) pairs were computed."""
    todo = [(g, r, v) for g, (caches, _, wanted) in enumerate(groups)
            for r, v in wanted if not caches.has(r.sha256, v)]
    if not todo:
        return 0
    # the backbone is frozen here: an inference copy with its BatchNorms folded away
    extractor = folded_copy(model).to(memory_format=torch.channels_last)
    views = _Todo(todo, [m for _, m, _ in groups])
    done = 0
    for batch in _batches(views, batch_size, workers):
        parts = [p.numpy() for p in extract(extractor, batch, precision)]
        for i, (group, record, view) in enumerate(todo[done:done + len(batch)]):
            caches = groups[group][0]
            caches.save(record.sha256, view, [p[i] for p in parts[:len(caches.caches)]])
        done += len(batch)
        if progress:
            progress("features", done, len(todo))
    return len(todo)


def _batches(views: _Todo, batch_size: int, workers: int) -> Iterator[torch.Tensor]:
    """The views in order, stacked by ``batch_size``: made by ``workers`` loader processes
    (one thread each, as DataLoader sets), or here on one thread, the forward keeping all."""
    if workers:
        yield from torch.utils.data.DataLoader(views, batch_size, num_workers=workers)
        return
    for start in range(0, len(views), batch_size):
        with one_thread():
            batch = torch.stack([views[i] for i in range(start, min(start + batch_size,
                                                                    len(views)))])
        yield batch


def load_matrix(
    cache: FeatureCache, records: Sequence[Record], views: Sequence[int]
) -> torch.Tensor:
    """Features as a [len(records), len(views), dim] tensor."""
    return torch.from_numpy(
        np.stack([np.stack([cache.load(r.sha256, v) for v in views]) for r in records])
    )


class ViewFeatures:
    """One frozen backbone's cached views under one pair of transforms, for ``layers`` (the
    feature layers, ``model.layer_names``) joined by ``norm`` (``model.join_layers``).

    Evaluation views live in caches keyed by the eval transform, augmented training views in
    caches keyed by the training transform, so trying another eval transform (or TTA) reuses
    the costly augmented views, and another augmentation reuses the eval views.

    The training pool of an image is view 0 (the eval transform), its mirror when TTA is on
    (computed for evaluation anyway), and ``views - 1`` augmented views. An image's evaluation
    feature is view 0, or with TTA the mean over its eval views (the mirror pair, and with
    "crops" the crops too): the head is linear, so that equals averaging the logits, which is
    what prediction does on images.
    """

    def __init__(self, root: Path, arch: str, weights_id: str, train_tf, eval_tf,  # type: ignore[no-untyped-def]
                 precision: str, layers: Sequence[str] = (OUT,), norm: str = "none") -> None:
        self.train_tf, self.eval_tf, self.precision = train_tf, eval_tf, precision
        self.n_eval_views = eval_tf.n_views
        self.norm = norm
        self.eval_caches = Layers(root, arch, weights_id, {"eval": eval_tf.feature_spec},
                                  precision, layers)
        self.train_caches = Layers(root, arch, weights_id, {"train": train_tf.spec},
                                   precision, layers)

    @property
    def keys(self) -> dict[str, list[str]]:
        return {"eval": self.eval_caches.keys, "train": self.train_caches.keys}

    def eval_views(self) -> list[int]:
        return list(range(self.n_eval_views))

    def pool_eval_views(self) -> list[int]:
        """The eval views that join the training pool: the framed image and its mirror (the
        crops, each a part of the image, are left to evaluation)."""
        return self.eval_views()[:MIRROR + 1]

    def pool_width(self, views: int) -> int:
        """How many training views ``pool`` gives an image for a recipe of ``views`` views; a
        pool loaded for more views holds these first."""
        return len(self.pool_eval_views()) + views - 1

    def fill(self, model: ShoalNet | MemberNet, train: Sequence[Record],
             val: Sequence[Record], views: int, progress: Progress | None = None,
             workers: int = 0) -> int:
        """Compute what is missing: eval views of every image, augmented views of ``train``."""
        groups = [
            (self.eval_caches, EvalViews(self.eval_tf),
             [(r, v) for r in [*train, *val] for v in self.eval_views()]),
            (self.train_caches, TrainViews(self.train_tf),
             [(r, v) for r in train for v in range(1, views)]),
        ]
        return fill_cache(model, groups, self.precision, progress=progress, workers=workers)

    def pool(self, records: Sequence[Record], views: int) -> torch.Tensor:
        """Training views as [len(records), pool size, dim]."""
        parts = [self.eval_caches.load(records, self.pool_eval_views())]
        if views > 1:
            parts.append(self.train_caches.load(records, range(1, views)))
        return join_layers([torch.cat(layer, 1) for layer in zip(*parts, strict=True)],
                           self.norm)

    def load_eval(self, records: Sequence[Record], views: Sequence[int]) -> torch.Tensor:
        """The eval cache's ``views`` of ``records`` as [len(records), len(views), dim]."""
        return join_layers(self.eval_caches.load(records, views), self.norm)

    def evaluation(self, records: Sequence[Record]) -> torch.Tensor:
        """Evaluation features as [len(records), dim] (TTA: the mean over the eval views)."""
        return self.load_eval(records, self.eval_views()).mean(1)


class JoinedFeatures:
    """A feature ensemble's views: each member's own ``ViewFeatures`` (one feature layer, no
    norm), concatenated in member order along the feature dimension, then ``norm`` applied to
    the whole, as ``ShoalNet`` does to its ``Ensemble`` body's output. The same interface as
    ``ViewFeatures``."""

    def __init__(self, members: Sequence[tuple[str, ViewFeatures]], norm: str = "none") -> None:
        self.members = list(members)
        self.norm = norm
        first = self.members[0][1]
        self.precision, self.n_eval_views = first.precision, first.n_eval_views
        self.train_tf, self.eval_tf = first.train_tf, first.eval_tf

    @property
    def keys(self) -> dict[str, list[str]]:
        return {kind: [k for _, f in self.members for k in f.keys[kind]]
                for kind in ("eval", "train")}

    def eval_views(self) -> list[int]:
        return self.members[0][1].eval_views()

    def pool_width(self, views: int) -> int:
        return self.members[0][1].pool_width(views)

    def fill(self, model: ShoalNet, train: Sequence[Record], val: Sequence[Record],
             views: int, progress: Progress | None = None, workers: int = 0) -> int:
        """Fill each member's cache from its body in ``model`` (an ``Ensemble`` body)."""
        bodies = model.body.members  # type: ignore[union-attr]
        return sum(features.fill(MemberNet(bodies[name]), train, val, views, progress, workers)
                   for name, features in self.members)

    def _join(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return join_layers([torch.cat(parts, -1)], self.norm)

    def pool(self, records: Sequence[Record], views: int) -> torch.Tensor:
        return self._join([f.pool(records, views) for _, f in self.members])

    def load_eval(self, records: Sequence[Record], views: Sequence[int]) -> torch.Tensor:
        return self._join([f.load_eval(records, views) for _, f in self.members])

    def evaluation(self, records: Sequence[Record]) -> torch.Tensor:
        return self.load_eval(records, self.eval_views()).mean(1)

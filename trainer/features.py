"""The fast path's feature cache: a frozen backbone's pooled features, computed once per image
and view, stored under ``<data dir>/features/<key>/``.

The key hashes architecture, weights, transform and precision; a file inside it is named by
the image's sha256 and the view index. View 0 is the validation transform (resize + centre
crop); views 1..n-1 are augmented with the training transform under a seed derived from the
image and the view, so the cache is the same whichever run fills it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.data import Record, open_rgb

Progress = Callable[[str, int, int], None]


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


def cache_key(arch: str, weights_id: str, spec: dict[str, Any], precision: str) -> str:
    blob = json.dumps(
        {"arch": arch, "weights": weights_id, "transform": spec, "precision": precision},
        sort_keys=True,
    )
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


class _Views(torch.utils.data.Dataset):
    def __init__(self, todo: Sequence[tuple[Record, int]], train_tf, eval_tf) -> None:  # type: ignore[no-untyped-def]
        self.todo, self.train_tf, self.eval_tf = todo, train_tf, eval_tf

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int) -> torch.Tensor:
        record, view = self.todo[i]
        img = open_rgb(record)
        if view == 0:
            return self.eval_tf(img)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(record.sha256, view))
            return self.train_tf(img)


@torch.inference_mode()
def extract(
    body: torch.nn.Module,
    batch: torch.Tensor,
    precision: str,
) -> torch.Tensor:
    """Backbone forward for feature extraction: channels_last, bf16 autocast when asked."""
    batch = batch.contiguous(memory_format=torch.channels_last)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )
    with autocast:
        out = body(batch)
    return out.float()


def fill_cache(
    cache: FeatureCache,
    body: torch.nn.Module,
    wanted: Sequence[tuple[Record, int]],
    train_tf,  # type: ignore[no-untyped-def]
    eval_tf,  # type: ignore[no-untyped-def]
    precision: str,
    batch_size: int = 32,
    progress: Progress | None = None,
    workers: int = 0,
) -> int:
    """Compute and store the (record, view) features not yet cached; returns how many."""
    todo = [(r, v) for r, v in wanted if not cache.has(r.sha256, v)]
    if not todo:
        return 0
    body.eval()
    body.to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(_Views(todo, train_tf, eval_tf), batch_size,
                                         num_workers=workers)
    done = 0
    for batch in loader:
        feats = extract(body, batch, precision).numpy()
        for (record, view), row in zip(todo[done:done + len(feats)], feats, strict=True):
            cache.save(record.sha256, view, row)
        done += len(feats)
        if progress:
            progress("features", done, len(todo))
    return len(todo)


def load_matrix(
    cache: FeatureCache, records: Sequence[Record], views: Sequence[int]
) -> torch.Tensor:
    """Features as a [len(records), len(views), dim] tensor."""
    return torch.from_numpy(
        np.stack([np.stack([cache.load(r.sha256, v) for v in views]) for r in records])
    )

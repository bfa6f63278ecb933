"""Thumbnails of stored images, made once per (image, size) and kept on disk beside the store
(``<data dir>/thumbs/<size>/ab/cd/<sha256>.jpg``); the file appears whole or not at all.

Each is written first under ``thumbs/.partial/`` (the same filesystem, never served: a served
path is built from a size and a hash) and renamed into place; what a killed writer left there
is removed when `shoal serve` next starts, once it is ``STALE_AFTER`` seconds old."""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from catalog.imaging import open_image
from catalog.limits import limits_from_settings
from catalog.settings import get_settings
from catalog.store import ImageStore

SIZES = (128, 256)
PARTIAL = ".partial"
STALE_AFTER = 300.0  # seconds: a write takes milliseconds, so an older file's writer is gone


def _thumbs() -> Path:
    return get_settings().data_dir / "thumbs"


def thumbnail_path(sha256: str, size: int) -> Path:
    store = ImageStore(_thumbs() / str(size))
    return store.path(store.relative_path(sha256))


def make_thumbnail(source: Path, sha256: str, size: int) -> Path:
    """The cached thumbnail of ``source``, written the first time it is asked for."""
    target = thumbnail_path(sha256, size)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open_image(source, limits_from_settings().max_pixels) as img:
        img.draft("RGB", (size, size))
        thumb = img.convert("RGB")
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    # encoded in memory (a few KiB) and written by Python, which retries a short write until it
    # fails with its reason: Pillow saving to a file writes to the descriptor itself and takes
    # a short write (a disk or file-size limit reached) for success, leaving a cut-off JPEG
    encoded = io.BytesIO()
    thumb.save(encoded, "JPEG", quality=85)
    partial = _thumbs() / PARTIAL
    partial.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{sha256[:12]}-{size}.", suffix=".part", dir=partial)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(encoded.getbuffer())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def remove_partials(older_than: float = STALE_AFTER) -> int:
    """Remove the temporary files of writers that were killed (those older than
    ``older_than`` seconds: a replica sharing the folder may be writing the newer ones);
    how many were removed."""
    cutoff, removed = time.time() - older_than, 0
    for path in (_thumbs() / PARTIAL).glob("*.part"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another replica removed it first
            continue
    return removed

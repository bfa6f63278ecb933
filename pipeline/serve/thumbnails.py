"""Thumbnails of stored images, made once per (image, size) and kept on disk beside the store
(``<data dir>/thumbs/<size>/ab/cd/<sha256>.jpg``); the file appears whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

from catalog.imaging import open_image
from catalog.limits import limits_from_settings
from catalog.settings import get_settings
from catalog.store import ImageStore

SIZES = (128, 256)


def thumbnail_path(sha256: str, size: int) -> Path:
    store = ImageStore(get_settings().data_dir / "thumbs" / str(size))
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
    fd, tmp = tempfile.mkstemp(prefix=f".{sha256[:8]}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            thumb.save(fh, "JPEG", quality=85)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target

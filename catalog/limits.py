"""Image limits taken from settings, so every entry path applies the same ones."""

from __future__ import annotations

from catalog.imaging import Limits
from catalog.settings import Settings, get_settings


def limits_from_settings(settings: Settings | None = None) -> Limits:
    s = (settings or get_settings()).catalog
    return Limits(
        min_side=s.min_side,
        max_pixels=s.max_pixels,
        max_bytes=s.max_bytes,
        max_long_side=s.max_long_side,
        jpeg_quality=s.jpeg_quality,
    )

"""The CPU-heavy step, run in worker processes so the crawl's reactor keeps the GIL to itself."""

from __future__ import annotations

from catalog.imaging import ImageRejected, Limits, NormalisedImage, normalise


def normalise_or_none(raw: bytes, limits: Limits) -> NormalisedImage | None:
    """``normalise(raw)``, or None when refused (``ingest_bytes`` then records the reason)."""
    try:
        return normalise(raw, limits)
    except ImageRejected:
        return None

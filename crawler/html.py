"""Picking the real, largest image URL out of lazy-loading ``<img>`` markup."""

from __future__ import annotations

import re

from parsel import Selector

# attributes lazy-loading scripts keep the real image in, best first
LAZY_ATTRS = ("data-original", "data-src", "data-lazy-src", "data-lazy", "data-url")
SRCSET_ATTRS = ("srcset", "data-srcset", "data-lazy-srcset")
_DESCRIPTOR = re.compile(r"^(\d+(?:\.\d+)?)([wx])$")


def parse_srcset(value: str) -> list[tuple[str, float]]:
    """(url, size) pairs of a srcset; ``800w`` is 800, ``2x`` is 2 (relative to 1x)."""
    out: list[tuple[str, float]] = []
    for part in value.split(","):
        bits = part.strip().split()
        if not bits:
            continue
        size = 1.0
        if len(bits) > 1 and (m := _DESCRIPTOR.match(bits[-1])):
            size = float(m.group(1))
        out.append((bits[0], size))
    return out


def _usable(url: str | None) -> bool:
    return bool(url) and not url.strip().startswith(("data:", "javascript:", "about:"))


def best_image_url(img: Selector) -> str | None:
    """The largest candidate of ``srcset``-like attributes, else the lazy source, else ``src``."""
    for attr in SRCSET_ATTRS:
        value = img.attrib.get(attr)
        if value:
            candidates = [(u, s) for u, s in parse_srcset(value) if _usable(u)]
            if candidates:
                return max(candidates, key=lambda c: c[1])[0]
    for attr in (*LAZY_ATTRS, "src"):
        value = img.attrib.get(attr)
        if value and _usable(value):
            return value.strip()
    return None


def clean_text(value: str | None) -> str | None:
    """Visible text of an HTML fragment (MediaWiki's Artist field is HTML)."""
    if not value:
        return None
    text = " ".join(Selector(text=f"<div>{value}</div>").xpath("//text()").getall())
    text = re.sub(r"\s+", " ", text).strip()
    return text or None

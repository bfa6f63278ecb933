"""Picking the real, largest image URL out of lazy-loading ``<img>`` markup."""

from __future__ import annotations

import re
from typing import Any

import lxml.html
from lxml import etree
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


BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
    "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "ol", "p",
    "pre", "section", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
})
HIDDEN_TAGS = frozenset({"script", "style", "template", "noscript"})


def _text_parts(el: Any, parts: list[str]) -> None:
    tag = el.tag if isinstance(el.tag, str) else ""  # comments and processing instructions
    if tag in HIDDEN_TAGS or not tag:
        return
    block = tag.lower() in BLOCK_TAGS
    if block:
        parts.append("\n")
    if el.text:
        parts.append(el.text)
    for child in el:
        _text_parts(child, parts)
        if child.tail:
            parts.append(child.tail)
    if block:
        parts.append("\n")


def clean_text(value: str | None) -> str | None:
    """An HTML fragment's text as a person reads it (MediaWiki's Artist field is HTML).

    Inline tags join their text as it stands (``<a>Bea</a><b>o</b>`` is "Beao", not "Bea o");
    block tags and ``<br>`` end a line; runs of whitespace become one space and the lines are
    joined with "; ". Scripts, styles and comments are no text.
    """
    if not value or not value.strip():
        return None
    try:
        root = lxml.html.fragment_fromstring(value, create_parent="div")
    except (etree.ParserError, ValueError):
        return re.sub(r"\s+", " ", value).strip() or None
    parts: list[str] = []
    _text_parts(root, parts)
    lines = (re.sub(r"\s+", " ", line).strip() for line in "".join(parts).split("\n"))
    return "; ".join(line for line in lines if line) or None


def first_match(sel: Selector | Any, alternatives: list[str]) -> Any:
    """The matches of the first CSS alternative that matches anything (an empty list if none)."""
    for css in alternatives:
        found = sel.css(css)
        if found:
            return found
    return []


def first_value(sel: Selector | Any, alternatives: list[str]) -> str | None:
    """The text or attribute the first matching alternative selects. ``X::text`` is read as a
    person reads the first element X, inline children included (``clean_text``)."""
    for css in alternatives:
        if css.endswith("::text"):
            elements = sel.css(css[: -len("::text")].rstrip() or "*")
            text = clean_text(elements[0].get()) if elements else None
            if text:
                return text
            continue
        found = sel.css(css)
        if not found:
            continue
        value = (found.get() or "").strip()
        if value:
            return value
    return None

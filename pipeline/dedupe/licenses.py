"""Rank the free-text licenses crawlers record, for choosing which copy of a photo to keep."""

from __future__ import annotations

import re

PUBLIC_DOMAIN, CC_BY, CC_BY_SA, OTHER_CC, UNKNOWN, ALL_RIGHTS_RESERVED = range(6)

_PD = re.compile(r"\bcc0\b|public[- ]?domain|^pd(m)?\b|no known copyright")
_RESERVED = re.compile(r"all[- ]rights[- ]reserved|copyright|©|\(c\)|proprietary")
_CC = re.compile(r"creative[- ]?commons|\bcc\b|^by\b")


def license_rank(text: str | None) -> int:
    """0 (CC0/public domain) < CC-BY < CC-BY-SA < other CC < unknown < all rights reserved."""
    if not text or not text.strip():
        return UNKNOWN
    t = text.strip().lower().replace("_", "-")
    if _PD.search(t):
        return PUBLIC_DOMAIN
    if _RESERVED.search(t):
        return ALL_RIGHTS_RESERVED
    tokens = set(re.split(r"[^a-z0-9]+", t))
    if _CC.search(t) or "by" in tokens:
        if tokens & {"nc", "nd"}:
            return OTHER_CC
        if "sa" in tokens:
            return CC_BY_SA
        if "by" in tokens:
            return CC_BY
        return OTHER_CC
    return UNKNOWN

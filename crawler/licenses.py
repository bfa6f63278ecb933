"""License names and URLs as the sources give them, mapped to one short code per license."""

from __future__ import annotations

import re

CC_URL = "https://creativecommons.org/licenses/{}/4.0/"
CC0_URL = "https://creativecommons.org/publicdomain/zero/1.0/"
LICENSE_URLS = {
    "cc0": CC0_URL,
    **{f"cc-{v}": CC_URL.format(v) for v in ("by", "by-nc", "by-sa", "by-nd", "by-nc-sa",
                                             "by-nc-nd")},
}
_CC_PATH = re.compile(r"creativecommons\.org/licenses/([a-z-]+)/(\d(?:\.\d)?)", re.I)
_CC_ENUM = re.compile(r"^CC_(BY(?:_NC)?(?:_SA|_ND)?)_(\d)_(\d)$", re.I)  # GBIF's enum form


def license_code(value: str | None) -> tuple[str | None, str | None]:
    """``(code, url)`` of a license given as a URL, a GBIF enum or a code (``cc-by-nc``):
    ``("CC-BY-NC", "http://creativecommons.org/licenses/by-nc/4.0/")``; ``(None, None)`` when
    no license is given or the text reserves all rights; other text is kept as it is."""
    text = (value or "").strip()
    if not text or re.search(r"all rights reserved|^©|^\(c\)", text, re.I):
        return None, None
    low = text.lower()
    if "publicdomain/zero" in low or low in ("cc0", "cc0_1_0", "cc0 1.0"):
        return "CC0", CC0_URL
    if "publicdomain/mark" in low:
        return "PD", text if low.startswith("http") else None
    if m := _CC_PATH.search(text):
        kind, version = m.group(1).lower(), m.group(2)
        return f"CC-{kind.upper()}", f"https://creativecommons.org/licenses/{kind}/{version}/"
    if m := _CC_ENUM.match(text):
        kind = m.group(1).lower().replace("_", "-")
        return f"CC-{kind.upper()}", (
            f"https://creativecommons.org/licenses/{kind}/{m.group(2)}.{m.group(3)}/")
    if low in LICENSE_URLS:
        return low.upper(), LICENSE_URLS[low]
    return text[:128], text if low.startswith("http") else None

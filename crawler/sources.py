"""Source names (``wikimedia``, ``inaturalist``, ``baike[:PROFILE]``, ``shop:PROFILE``)."""

from __future__ import annotations

from typing import Any

from crawler.profiles import ProfileError, available_profiles, load_profile
from crawler.spiders import SPIDERS, ShoalSpider


class UnknownSource(ValueError):
    """A source name that names no spider or no site profile."""


def all_sources() -> list[str]:
    shops = [f"shop:{name}" for name in available_profiles("shop")]
    return ["wikimedia", "inaturalist", "gbif", "baike", *shops]


def default_sources() -> list[str]:
    """What a crawl without ``--source`` uses: every source but the shops whose profile says
    ``crawl_by_default: false``."""
    return [s for s in all_sources()
            if not s.startswith("shop:") or load_profile(s[5:]).crawl_by_default]


def spider_for(source: str) -> tuple[type[ShoalSpider], dict[str, Any]]:
    """The spider class for ``source`` and the arguments that pick its profile."""
    kind, _, profile = source.partition(":")
    if kind not in SPIDERS:
        raise UnknownSource(f"unknown source '{source}' (known: {', '.join(all_sources())})")
    if kind == "shop" and not profile:
        shops = ", ".join(s for s in all_sources() if s.startswith("shop:")) or "none"
        raise UnknownSource(f"the shop source needs a profile: shop:PROFILE (known: {shops})")
    if profile and kind not in ("shop", "baike"):
        raise UnknownSource(f"source '{kind}' takes no profile")
    if not profile:
        return SPIDERS[kind], {}
    try:
        load_profile(profile, kind="shop" if kind == "shop" else "encyclopedia")
    except ProfileError as exc:
        raise UnknownSource(str(exc)) from exc
    return SPIDERS[kind], {"profile": profile}


def chosen_sources(names: list[str], default: list[str]) -> list[str]:
    """``names`` (else ``default``), each checked: raises ``UnknownSource`` for a bad one."""
    chosen = names or default
    for name in chosen:
        spider_for(name)
    return chosen

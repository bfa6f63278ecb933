"""Where each site lives.

Every site a spider talks to has a default public base URL and can be pointed elsewhere with
``SHOAL_CRAWL_SITE_<NAME>`` (NAME upper-cased, non-alphanumerics as ``_``): that is how the tests,
the benchmark and the demo point every spider at the local test site on loopback. The crawler's
other settings are the ``crawl`` section of :mod:`catalog.settings`.
"""

from __future__ import annotations

from catalog.settings import SITE_ENV_PREFIX, get_settings, site_env_name

DEFAULT_SITES: dict[str, str] = {
    "wikipedia_en": "https://en.wikipedia.org",
    "wikipedia_zh": "https://zh.wikipedia.org",
    "commons": "https://commons.wikimedia.org",
    "inaturalist_api": "https://api.inaturalist.org/v1",
    "gbif_api": "https://api.gbif.org/v1",
    "gbif": "https://www.gbif.org",
}


def site_url(name: str, default: str | None = None) -> str:
    """Base URL of site ``name``: the ``SHOAL_CRAWL_SITE_*`` override, else ``default``, else
    built-in."""
    override = get_settings().crawl.sites.get(site_env_name(name).removeprefix(SITE_ENV_PREFIX))
    url = override or default or DEFAULT_SITES.get(name)
    if not url:
        raise KeyError(f"no base URL for site '{name}' (set {site_env_name(name)})")
    return url.rstrip("/")

"""What every Shoal spider shares: species keywords and names, the image limit, page
bookkeeping, and every dropped result counted by its reason (``crawler.stats.Drop``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response
from twisted.python.failure import Failure

from crawler.failures import classify
from crawler.items import ImageItem, image_item
from crawler.profiles import Profile, load_profile
from crawler.stats import Drop


def name_key(name: str) -> str:
    """A name as compared: case, underscores and runs of spaces do not matter."""
    return " ".join(name.replace("_", " ").split()).casefold()


class ShoalSpider(scrapy.Spider):
    """Spider arguments: ``species`` (slug, latin_name, keywords by language, and when resolved
    ``names`` (registered, accepted, synonyms), ``taxon_class``, ``gbif_key``) and ``limit``."""

    name = "shoal"
    # keyword languages this source is searched in, best first ("la" is the Latin name)
    languages: tuple[str, ...] = ("la", "en", "zh")
    # hosts this source fetches from (pages and images); None: any public host (GBIF media
    # live on their publishers' servers). Read by the host-confinement middleware.
    hosts: tuple[str, ...] | None = ()
    # the sites it talks to (keys of site_url): their configured hosts (a SHOAL_CRAWL_SITE_*
    # override, e.g. a mirror or the local test site) are allowed besides ``hosts``
    site_keys: tuple[str, ...] = ()

    def __init__(self, species: dict[str, Any], limit: int | None = None,
                 max_starts: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.species = species
        self.limit = int(limit) if limit else None
        self.max_starts = int(max_starts) if max_starts else None  # `sources check`: one query
        self.found: set[str] = set()

    async def start(self) -> AsyncIterator[Any]:
        # never filtered: a resumed crawl (JOBDIR) must search again, its seen-set notwithstanding
        for n, request in enumerate(self.initial_requests()):
            if self.max_starts is not None and n >= self.max_starts:
                break
            yield request.replace(dont_filter=True)

    def initial_requests(self) -> Iterable[Any]:
        raise NotImplementedError

    # --- keywords -------------------------------------------------------------------------
    def keywords(self, languages: Iterable[str] | None = None) -> list[str]:
        words: dict[str, None] = {}
        table = self.species.get("keywords") or {}
        for lang in languages or self.languages:
            if lang == "la":
                words.setdefault(self.species["latin_name"], None)
            for word in table.get(lang) or []:
                words.setdefault(word, None)
        for word in table.get("extra") or []:
            words.setdefault(word, None)
        return list(words) or [self.species["latin_name"]]

    def scientific_names(self) -> list[str]:
        """The registered Latin name, the accepted name and the synonyms."""
        return list(dict.fromkeys([self.species["latin_name"], *(self.species.get("names") or [])]))

    def is_species_name(self, name: str | None) -> bool:
        return bool(name) and name_key(name) in {name_key(n) for n in self.scientific_names()}

    def is_known_name(self, name: str | None) -> bool:
        """A scientific name or a search keyword of this species (an article title)."""
        return bool(name) and name_key(name) in {
            name_key(n) for n in [*self.scientific_names(), *self.keywords()]}

    def mentions_species(self, *texts: str | None) -> bool:
        """Whether one of the species' scientific names appears in one of the texts."""
        haystack = name_key(" ".join(t for t in texts if t))
        return any(name_key(n) in haystack for n in self.scientific_names())

    # --- images ---------------------------------------------------------------------------
    @property
    def full(self) -> bool:
        return self.limit is not None and len(self.found) >= self.limit

    def drop(self, reason: str, n: int = 1) -> None:
        """Count a result left out before any download, by reason (``Drop``)."""
        self.crawler.stats.inc_value(f"shoal/skipped/{reason}", n)

    def emit(self, url: str | None, response: Response, **meta: str | None) -> ImageItem | None:
        """An item for ``url``, or None (counted) when it has none, is no web URL or was
        already found in this crawl; None (not counted) once the limit is met."""
        if self.full:
            return None
        if not url or not url.strip():
            self.drop(Drop.NO_URL)
            return None
        url = response.urljoin(url.strip())
        if urlsplit(url).scheme not in ("http", "https"):
            self.drop(Drop.BAD_URL)
            return None
        if url in self.found:
            self.drop(Drop.DUPLICATE_URL)
            return None
        self.found.add(url)
        self.crawler.stats.inc_value("shoal/images_found")
        meta.setdefault("site", self.site_name(response.url))
        meta.setdefault("page_url", response.url)
        return image_item(url, **meta)

    def site_name(self, url: str) -> str:
        return urlsplit(url).netloc

    # --- pages ----------------------------------------------------------------------------
    def page(self, url: str, callback: Any, **kwargs: Any) -> scrapy.Request:
        return scrapy.Request(url, callback=callback, errback=self.page_failed, **kwargs)

    def page_ok(self, response: Response) -> None:
        self.crawler.stats.inc_value("shoal/pages_ok")

    def page_failed(self, failure: Failure) -> None:
        why = classify(failure)
        self.crawler.stats.inc_value(f"shoal/page_errors/{why.reason}")
        stats = self.crawler.stats
        if not stats.get_value("shoal/first_page_error"):
            request = getattr(failure, "request", None)
            where = f" ({request.url})" if request is not None else ""
            stats.set_value("shoal/first_page_error", f"{why.reason}: {why.detail}{where}")
        self.logger.warning("page failed: %s %s", why.reason, why.detail)


class ProfileSpider(ShoalSpider):
    """A spider whose site is described by a YAML profile of ``profile_kind``."""

    profile_kind = "shop"
    default_profile: str | None = None

    def __init__(self, *args: Any, profile: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        name = profile or self.default_profile
        if not name:
            raise ValueError(f"the {self.name} spider needs a profile")
        self.profile: Profile = load_profile(name, kind=self.profile_kind)
        self.languages = tuple(self.profile.languages)
        self.hosts = self.profile.allowed_hosts

"""Research-grade observation photos from the iNaturalist API (v1).

``GET /v1/taxa?q=NAME`` resolves the Latin name to a taxon id; ``GET /v1/observations`` with
``taxon_id``, ``quality_grade=research``, ``photos=true``, ``order_by=id&order=asc`` and
``id_above`` pages through observations (the API's recommended way past 10,000 results).
Each photo has a ``license_code`` (null: all rights reserved) and a ``url`` in the ``square``
size; the ``large`` (1024 px) size is fetched instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from scrapy.http import Response

from crawler.sites import site_url
from crawler.spiders.base import ShoalSpider

LICENSE_URLS = {
    "cc0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "cc-by": "https://creativecommons.org/licenses/by/4.0/",
    "cc-by-nc": "https://creativecommons.org/licenses/by-nc/4.0/",
    "cc-by-sa": "https://creativecommons.org/licenses/by-sa/4.0/",
    "cc-by-nd": "https://creativecommons.org/licenses/by-nd/4.0/",
    "cc-by-nc-sa": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "cc-by-nc-nd": "https://creativecommons.org/licenses/by-nc-nd/4.0/",
}
SIZES = ("square", "thumb", "small", "medium", "original")


def larger_photo_url(url: str, size: str = "large") -> str:
    """``.../photos/123/square.jpg`` -> ``.../photos/123/large.jpg``."""
    head, sep, tail = url.rpartition("/")
    stem, dot, ext = tail.partition(".")
    if sep and stem in SIZES:
        return f"{head}/{size}{dot}{ext}"
    return url


class INaturalistSpider(ShoalSpider):
    name = "inaturalist"
    languages = ("la",)
    per_page = 200

    def __init__(self, *args: Any, all_rights_reserved: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.all_rights_reserved = all_rights_reserved in (True, "1", "true", "yes")

    def api(self, path: str, **params: str) -> str:
        return f"{site_url('inaturalist_api')}/{path}?{urlencode(params)}"

    def initial_requests(self) -> Iterator[Any]:
        for name in self.keywords():
            yield self.page(self.api("taxa", q=name, per_page="10"), self.parse_taxa,
                            cb_kwargs={"name": name})

    def parse_taxa(self, response: Response, name: str) -> Iterator[Any]:
        self.page_ok(response)
        results = response.json().get("results", [])
        exact = [t for t in results if (t.get("name") or "").casefold() == name.casefold()]
        taxon = (exact or results or [None])[0]
        if taxon is None:
            self.logger.info("iNaturalist knows no taxon named %r", name)
            return
        yield self.observations(taxon["id"], name, 0)

    def observations(self, taxon_id: int, name: str, id_above: int) -> Any:
        url = self.api("observations", taxon_id=str(taxon_id), quality_grade="research",
                       photos="true", per_page=str(self.per_page), order_by="id", order="asc",
                       id_above=str(id_above))
        return self.page(url, self.parse_observations,
                         cb_kwargs={"taxon_id": taxon_id, "name": name})

    def parse_observations(self, response: Response, taxon_id: int, name: str) -> Iterator[Any]:
        self.page_ok(response)
        results = response.json().get("results", [])
        for obs in results:
            user = obs.get("user") or {}
            for photo in obs.get("photos") or []:
                code = photo.get("license_code")
                if not code and not self.all_rights_reserved:
                    self.crawler.stats.inc_value("shoal/skipped/all_rights_reserved")
                    continue
                item = self.emit(
                    larger_photo_url(photo.get("url") or ""), response,
                    page_url=obs.get("uri"), site="inaturalist.org",
                    license=(code or "all-rights-reserved").upper(),
                    license_url=LICENSE_URLS.get(code or ""),
                    artist=user.get("name") or user.get("login"),
                    title=photo.get("attribution") or (obs.get("taxon") or {}).get("name"),
                    keyword=name,
                )
                if item is not None:
                    yield item
        if results and not self.full:
            yield self.observations(taxon_id, name, max(o["id"] for o in results))

"""Research-grade observation photos from the iNaturalist API (v1).

``GET /v1/taxa?q=NAME`` resolves the Latin name to a taxon id; ``GET /v1/observations`` with
``taxon_id``, ``quality_grade=research``, ``photos=true``, ``order_by=id&order=asc`` and
``id_above`` pages through observations (the API's recommended way past 10,000 results).
Each photo has a ``license_code`` (null: all rights reserved) and a ``url`` in the ``square``
size; the ``large`` (1024 px) size is fetched instead.

Only the species' own taxon is crawled: a ``/taxa`` result is taken when its ``name`` (or the
``matched_term``, for a synonym) is one of the species' scientific names, its rank is species
or lower (``rank_level`` <= 10) and it is a fish (iconic taxon Actinopterygii; for a species
GBIF classed in another fish class, such as a shark, iNaturalist's iconic taxon is the
kingdom, Animalia). No such result: the search counts as ``no_taxon`` (never "the first
result", which for a partial name can be a beetle). An observation whose taxon is neither that
taxon nor below it is ``wrong_taxon``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from scrapy.http import Response

from crawler.licenses import LICENSE_URLS
from crawler.sites import site_url
from crawler.spiders.base import ShoalSpider
from crawler.stats import Drop
from crawler.taxonomy import FISH_CLASSES

SIZES = ("square", "thumb", "small", "medium", "original")
FISH_ICONIC = "Actinopterygii"  # iNaturalist's one fish iconic taxon (id 47178)
SPECIES_RANK_LEVEL = 10


def results_of(data: Any) -> list[dict[str, Any]]:
    """The records of an answer: its ``results``, or a bare record stored without them."""
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        return data["results"]
    return [data] if isinstance(data, dict) and "id" in data else []


def larger_photo_url(url: str, size: str = "large") -> str:
    """``.../photos/123/square.jpg`` -> ``.../photos/123/large.jpg``."""
    head, sep, tail = url.rpartition("/")
    stem, dot, ext = tail.partition(".")
    if sep and stem in SIZES:
        return f"{head}/{size}{dot}{ext}"
    return url


class INaturalistSpider(ShoalSpider):
    name = "inaturalist"
    site_keys = ("inaturalist_api",)
    languages = ("la",)
    per_page = 200
    hosts = ("api.inaturalist.org", "www.inaturalist.org", "static.inaturalist.org",
             "inaturalist-open-data.s3.amazonaws.com")

    def __init__(self, *args: Any, all_rights_reserved: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.all_rights_reserved = all_rights_reserved in (True, "1", "true", "yes")
        self.taxa: set[int] = set()

    def api(self, path: str, **params: str) -> str:
        return f"{site_url('inaturalist_api')}/{path}?{urlencode(params)}"

    def initial_requests(self) -> Iterator[Any]:
        for name in dict.fromkeys([*self.keywords(), *self.scientific_names()]):
            yield self.page(self.api("taxa", q=name, per_page="10"), self.parse_taxa,
                            cb_kwargs={"name": name})

    def is_fish(self, taxon: dict[str, Any]) -> bool:
        iconic = taxon.get("iconic_taxon_name")
        if iconic == FISH_ICONIC:
            return True
        other_fish = self.species.get("taxon_class") in FISH_CLASSES - {FISH_ICONIC}
        return iconic == "Animalia" and other_fish

    def acceptable(self, taxon: dict[str, Any]) -> str | None:
        """Why this ``/taxa`` result is not the species' taxon, or None when it is."""
        if not (self.is_species_name(taxon.get("name"))
                or self.is_species_name(taxon.get("matched_term"))):
            return f"name {taxon.get('name')!r} is none of {self.scientific_names()}"
        level = taxon.get("rank_level")
        if level is None or float(level) > SPECIES_RANK_LEVEL:
            return f"rank {taxon.get('rank')!r} is above species"
        if not self.is_fish(taxon):
            return f"iconic taxon {taxon.get('iconic_taxon_name')!r} is no fish"
        return None

    def parse_taxa(self, response: Response, name: str) -> Iterator[Any]:
        self.page_ok(response)
        results = results_of(response.json())
        why = {t.get("id"): self.acceptable(t) for t in results}
        taxon = next((t for t in results if why[t.get("id")] is None), None)
        if taxon is None:
            self.drop(Drop.NO_TAXON)
            self.logger.warning("iNaturalist has no fish species taxon named %r: %s", name,
                                "; ".join(f"{t.get('name')}: {why[t.get('id')]}"
                                          for t in results[:5]) or "no results")
            return
        if taxon["id"] in self.taxa:  # another name of the same taxon
            return
        self.taxa.add(taxon["id"])
        yield self.observations(taxon["id"], name, 0)

    def observations(self, taxon_id: int, name: str, id_above: int) -> Any:
        url = self.api("observations", taxon_id=str(taxon_id), quality_grade="research",
                       photos="true", per_page=str(self.per_page), order_by="id", order="asc",
                       id_above=str(id_above))
        return self.page(url, self.parse_observations,
                         cb_kwargs={"taxon_id": taxon_id, "name": name})

    def parse_observations(self, response: Response, taxon_id: int, name: str) -> Iterator[Any]:
        self.page_ok(response)
        results = results_of(response.json())
        for obs in results:
            taxon = obs.get("taxon") or {}
            photos = obs.get("photos") or []
            if taxon.get("id") != taxon_id and taxon_id not in (taxon.get("ancestor_ids") or []):
                self.drop(Drop.WRONG_TAXON, len(photos))
                continue
            user = obs.get("user") or {}
            for photo in photos:
                code = photo.get("license_code")
                if not code and not self.all_rights_reserved:
                    self.drop(Drop.ALL_RIGHTS_RESERVED)
                    continue
                item = self.emit(
                    larger_photo_url(photo.get("url") or ""), response,
                    page_url=obs.get("uri"), site="inaturalist.org",
                    license=(code or "all-rights-reserved").upper(),
                    license_url=LICENSE_URLS.get(code or ""),
                    artist=user.get("name") or user.get("login"),
                    title=photo.get("attribution") or taxon.get("name"),
                    keyword=name,
                )
                if item is not None:
                    yield item
        ids = [o["id"] for o in results if isinstance(o.get("id"), int)]
        if ids and not self.full:
            yield self.observations(taxon_id, name, max(ids))

"""Still images of GBIF occurrences of the species' taxon (``GET /v1/occurrence/search``).

``taxonKey`` is the accepted key the species was resolved to (``shoal species add``); an
unresolved species is matched first (``/v1/species/match``) and crawled only when that is a
fish species. ``mediaType=StillImage`` asks for occurrences with pictures; the API pages with
``offset`` and ``limit`` (at most 300) until ``endOfRecords``. Each ``media`` entry of
``type`` StillImage (entries without a type count when their ``format`` is an image type) is
one image: ``identifier`` is the picture (on the publisher's server), ``license`` the
media's own license else the occurrence's (a Creative Commons URL, mapped to a code as the
other sources are), ``creator`` / ``rightsHolder`` the author, ``publisher`` (else the
dataset) who published it, and ``https://www.gbif.org/occurrence/KEY`` the page. An
occurrence of another taxon, or of a class that is no fish, is ``wrong_taxon``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from scrapy.http import Response

from crawler.licenses import license_code
from crawler.sites import site_url
from crawler.spiders.base import ShoalSpider
from crawler.stats import Drop
from crawler.taxonomy import FISH_CLASSES, match_url, parse_match


class GbifSpider(ShoalSpider):
    name = "gbif"
    site_keys = ("gbif_api",)
    languages = ("la",)
    per_page = 100
    hosts = None  # media identifiers live on each publisher's own server

    def initial_requests(self) -> Iterator[Any]:
        key = self.species.get("gbif_key")
        if key:
            yield self.occurrences(int(key), 0)
            return
        yield self.page(match_url(self.species["latin_name"]), self.parse_match)

    def parse_match(self, response: Response) -> Iterator[Any]:
        self.page_ok(response)
        taxon = parse_match(self.species["latin_name"], response.json())
        if taxon.refusals() or taxon.accepted_key is None:
            self.drop(Drop.NO_TAXON)
            self.logger.warning("GBIF: %s", "; ".join(taxon.refusals()))
            return
        yield self.occurrences(taxon.accepted_key, 0)

    def occurrences(self, taxon_key: int, offset: int) -> Any:
        params = {"taxonKey": str(taxon_key), "mediaType": "StillImage",
                  "limit": str(self.per_page), "offset": str(offset)}
        url = f"{site_url('gbif_api')}/occurrence/search?{urlencode(params)}"
        return self.page(url, self.parse_occurrences, cb_kwargs={"taxon_key": taxon_key})

    def right_taxon(self, record: dict[str, Any], taxon_key: int) -> bool:
        keys = {record.get(k) for k in ("taxonKey", "acceptedTaxonKey", "speciesKey")}
        return taxon_key in keys and record.get("class", "Actinopterygii") in {
            *FISH_CLASSES, None}

    def parse_occurrences(self, response: Response, taxon_key: int) -> Iterator[Any]:
        self.page_ok(response)
        data = response.json()
        results = data.get("results") or []
        for record in results:
            media = record.get("media") or []
            if not self.right_taxon(record, taxon_key):
                self.drop(Drop.WRONG_TAXON, len(media))
                continue
            for entry in media:
                if (item := self.media_item(record, entry, response)) is not None:
                    yield item
        if results and not data.get("endOfRecords", True) and not self.full:
            offset = int(data.get("offset", 0)) + int(data.get("limit", len(results)))
            yield self.occurrences(taxon_key, offset)

    def media_item(self, record: dict[str, Any], entry: dict[str, Any],
                   response: Response) -> Any:
        kind, fmt = entry.get("type"), (entry.get("format") or "").lower()
        if kind != "StillImage" and not (kind is None and fmt.startswith("image/")):
            self.drop(Drop.NOT_AN_IMAGE_TYPE)
            return None
        code, url = license_code(entry.get("license") or record.get("license"))
        if code is None:
            self.drop(Drop.ALL_RIGHTS_RESERVED)
            return None
        holder = entry.get("rightsHolder") or record.get("rightsHolder")
        publisher = (entry.get("publisher") or record.get("publisher")
                     or record.get("datasetName") or record.get("institutionCode"))
        credit = "; ".join(x for x in (f"© {holder}" if holder else None,
                                       f"published by {publisher}" if publisher else None) if x)
        name = record.get("scientificName") or record.get("species")
        return self.emit(
            entry.get("identifier"), response,
            page_url=f"{site_url('gbif')}/occurrence/{record.get('key')}",
            site="gbif.org", license=code, license_url=url,
            artist=entry.get("creator") or holder,
            title=f"{name} ({credit})" if credit else name,
            keyword=self.species["latin_name"],
        )

"""A local site shaped like every real source, serving real photos and hostile files.

``serve(photo_root, species_map)`` starts a threaded HTTP server on loopback and returns a
``TestSite`` whose ``env()`` points every spider at it. A search term matches a species when it
equals (case-insensitively) a key of ``species_map`` (keyword or Latin name -> photo folder);
every photo of that folder is then answered by every source, each under its own URL:

- ``/wiki/{en,zh}/w/api.php``: MediaWiki article lookup by ``titles`` with ``pageimages``
  (answered, as the real API does, with ``normalized`` and ``redirects`` blocks: an article is
  listed under the species' first name, the other names redirect to it) and ``imageinfo``
  (``formatversion=2``), ``/commons/w/api.php``: File-namespace search with ``imageinfo`` and
  ``extmetadata`` license/artist (HTML)/categories, ``continue``/``gsroffset`` paging, and on
  the first page a video, a PDF and an SVG file; uploads under ``/commons``.
- ``/inat/v1/taxa`` and ``/inat/v1/observations`` (``id_above`` paging, ``license_code``, one in
  five photos all-rights-reserved); ``/inat/photos/ID/{square,large,original}.jpg``.
- ``/baike/item/NAME``: an article with a summary picture linking to a paged album: in the
  present-day markup (generated ``lemmaSummary_…`` / ``abstractAlbum_…`` class names, the
  picture a ``x-bce-process=…w_268`` thumbnail) for odd photo ids, the old ``summary-pic``
  markup for even ones.
- ``/gbif/v1/species/match``, ``/gbif/v1/occurrence/search`` (``offset``/``limit``,
  ``endOfRecords``, StillImage media with license URLs, one in five without a license of its
  own, so the occurrence's applies) in the shape of the recorded GBIF answers (the match in
  the 2025 shape, without ``class``); media under ``/gbif/media/ID.jpg``.
- ``/shop/search?q=NAME&page=N``: paged results whose images use ``srcset``, lazy ``data-src``
  and ``data-srcset`` (the small size in ``src``, the large one in the lazy attributes); every
  other product link is a click-tracking redirect ``/shop/click?url=…``.
- ``/planted/NAME/search``: a shop-shaped results page whose image and next-page URLs the test
  planted (``TestSite.plant``): URLs on other hosts, for the crawler's confinement tests;
  ``/net/redirect?to=URL`` redirects anywhere (an open redirect).
- every request is logged as (Host header, path) in ``TestSite.log``.
- ``/robots.txt`` disallows ``/private/``. The first shop page of a known species also lists the
  hostile files (``pipeline.demo.site.hostile``) and the network-level ones: a 404, a redirect
  loop, a slow response (bounded), a download larger than the size cap and a robots-disallowed
  image.

``variants=N`` serves each photo under N distinct URLs with distinct bytes: the original, then
re-encodings at 640 and 400 px long side (the size ladder real sites serve) and further
re-encodings, for the benchmark.
"""

from __future__ import annotations

import html
import io
import json
import re
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from PIL import Image

from catalog.imaging import Limits, open_image
from catalog.settings import site_env_name
from pipeline.demo.site.hostile import hostile_files

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
LICENSES = ["cc-by", "cc-by-nc", None, "cc0", "cc-by-sa"]  # None: all rights reserved
COMMONS_LICENSES = [("CC BY-SA 4.0", "https://creativecommons.org/licenses/by-sa/4.0"),
                    ("CC BY 4.0", "https://creativecommons.org/licenses/by/4.0"),
                    ("Public domain", None)]
GBIF_KEY = 70000  # + the entry id of the species' first photo
NOT_STILL = [("File:Shoal_dive.webm", "video/webm", "webm"),
             ("File:Shoal_report.pdf", "application/pdf", "pdf"),
             ("File:Shoal_diagram.svg", "image/svg+xml", "svg")]
NETWORK_CASES = ["/net/404.jpg", "/net/loop-a.jpg", "/net/slow.jpg", "/net/huge.jpg",
                 "/private/hidden.jpg"]
# bodies that grow past the size cap only while read: listed with ``size_cases=True`` (a test
# lowers the cap for them, so the cut comes well within its download timeout)
SIZE_CASES = ["/net/huge-unsized.jpg", "/net/gzip-bomb.jpg"]
SHOP_PAGE = 24
ALBUM_PAGE = 12
HUGE_BYTES = 64 * 1024 * 1024
VARIANT_SIDES = [None, 640, 400, 800, 512, 320]


def _key(term: str) -> str:
    return re.sub(r"\s+", " ", term.replace("_", " ")).strip().casefold()


@dataclass(frozen=True)
class Entry:
    """One photo as served: a file under one variant, with a stable id (from 1)."""

    id: int
    species: str  # the species_map key
    path: Path
    variant: int

    @property
    def name(self) -> str:
        return f"Shoal_{self.id}_{re.sub(r'[^A-Za-z0-9.]+', '_', self.path.stem)}.jpg"


@dataclass
class Photos:
    entries: list[Entry] = field(default_factory=list)
    by_key: dict[str, list[Entry]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # key -> the name as given

    @classmethod
    def build(cls, species_map: dict[str, Path], variants: int) -> Photos:
        photos = cls()
        for name, folder in species_map.items():
            files = sorted(p for p in Path(folder).rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            key = _key(name)
            photos.names[key] = name
            bucket = photos.by_key.setdefault(key, [])
            for v in range(variants):
                for path in files:
                    entry = Entry(len(photos.entries) + 1, key, path, v)
                    photos.entries.append(entry)
                    bucket.append(entry)
        return photos

    def get(self, entry_id: int) -> Entry | None:
        return self.entries[entry_id - 1] if 0 < entry_id <= len(self.entries) else None

    def search(self, term: str) -> list[Entry]:
        return self.by_key.get(_key(term), [])


def _reencode(raw: bytes, side: int | None, quality: int) -> bytes:
    img = open_image(raw, Limits.max_pixels)  # the served photos are the operator's files
    if img.format == "JPEG" and side:
        img.draft("RGB", (side, side))
    img = img.convert("RGB")
    if side:
        img.thumbnail((side, side))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


@dataclass(frozen=True)
class Planted:
    """A results page of given image URLs (and a next-page URL), on any host."""

    images: tuple[str, ...]
    next_page: str | None = None


class Site:
    """What the handler serves; shared by all request threads."""

    def __init__(self, photos: Photos, *, hostile: bool, slow_seconds: float,
                 size_cases: bool = False) -> None:
        self.photos = photos
        self.hostile = hostile
        self.size_cases = size_cases
        self.slow_seconds = slow_seconds
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._made: dict[tuple[int, str], bytes] = {}
        self.requests = 0
        self.log: list[tuple[str, str]] = []  # (Host header, path), in arrival order
        self.planted: dict[str, Planted] = {}

    def photo_bytes(self, entry: Entry, size: str = "full") -> bytes:
        raw = entry.path.read_bytes()
        if size == "full" and entry.variant == 0:
            return raw
        cache_key = (entry.id, size)
        with self._lock:
            if cache_key in self._made:
                return self._made[cache_key]
        if size == "full":
            side = VARIANT_SIDES[entry.variant % len(VARIANT_SIDES)]
            data = _reencode(raw, side, 85 - entry.variant)
        else:
            data = _reencode(raw, {"square": 75, "small": 240, "w320": 320}.get(size, 320), 80)
        with self._lock:
            self._made[cache_key] = data
        return data

    def prepare(self) -> None:
        """Make every variant now, so serving them later costs no image work."""
        for entry in self.photos.entries:
            if entry.variant:
                self.photo_bytes(entry)


# --- pages ------------------------------------------------------------------------------------
def _page(title: str, body: str) -> bytes:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>").encode()


def _mw_imageinfo(base: str, entry: Entry, species_name: str,
                  license_index: int | None = None) -> dict[str, Any]:
    short, url = COMMONS_LICENSES[(license_index if license_index is not None else entry.id) % 3]
    upload = f"{base}/commons/upload/{entry.id}/{entry.name}"
    ext: dict[str, Any] = {
        "LicenseShortName": {"value": short, "source": "commons-desc-page"},
        # split over inline tags, as real Artist fields are: read as "Diver N"
        "Artist": {"value": f"<a href='{base}/commons/wiki/User:Diver{entry.id % 7}'>"
                            f"Di<b>ver</b> {entry.id % 7}</a>", "source": "commons-desc-page"},
        "ObjectName": {"value": entry.path.stem, "source": "commons-desc-page"},
        "Categories": {"value": f"{species_name}|Fish photographs", "source":
                       "commons-categories"},
    }
    if url:
        ext["LicenseUrl"] = {"value": url, "source": "commons-desc-page"}
    return {"url": upload, "thumburl": upload, "thumbwidth": 1024, "thumbheight": 768,
            "width": 1024, "height": 768, "size": entry.path.stat().st_size,
            "mime": "image/jpeg", "descriptionurl": f"{base}/commons/wiki/File:{entry.name}",
            "descriptionshorturl": f"{base}/commons/w/index.php?curid={entry.id}",
            "extmetadata": ext}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a silent client holds its thread (keep-alive connections included)
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    @property
    def site(self) -> Site:
        return self.server.site

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # --- plumbing ---------------------------------------------------------------------------
    def send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8",
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, data: Any) -> None:
        self.send(200, json.dumps(data, ensure_ascii=False).encode(),
                  "application/json; charset=utf-8")

    def not_found(self) -> None:
        self.send(404, _page("Not found", "<p>No such page.</p>"))

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        self.site.requests += 1
        self.site.log.append((self.headers.get("Host", ""), self.path))
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with suppress(BrokenPipeError, ConnectionResetError):
            self.route(path, query)

    def route(self, path: str, q: dict[str, str]) -> None:
        if path == "/robots.txt":
            self.send(200, b"User-agent: *\nDisallow: /private/\n", "text/plain")
        elif m := re.fullmatch(r"/wiki/(en|zh)/w/api\.php", path):
            self.wiki_api(m.group(1), q)
        elif path == "/commons/w/api.php":
            self.commons_api(q)
        elif m := re.fullmatch(r"/(?:wiki/(?:en|zh)|commons)/wiki/(.+)", path):
            self.send(200, _page(m.group(1), "<p>Article.</p>"))
        elif m := re.fullmatch(r"/commons/upload/(\d+)/[^/]+", path):
            self.image(int(m.group(1)))
        elif path == "/inat/v1/taxa":
            self.inat_taxa(q)
        elif path == "/inat/v1/observations":
            self.inat_observations(q)
        elif m := re.fullmatch(r"/inat/photos/(\d+)/(square|small|medium|large|original)\.jpg",
                               path):
            size = m.group(2)
            self.image(int(m.group(1)), "square" if size == "square" else "full")
        elif m := re.fullmatch(r"/inat/observations/(\d+)", path):
            self.send(200, _page(f"Observation {m.group(1)}", ""))
        elif m := re.fullmatch(r"/baike/item/(.+)", path):
            self.baike_article(m.group(1))
        elif m := re.fullmatch(r"/baike/pic/(.+)", path):
            self.baike_album(m.group(1), int(q.get("page", "1")))
        elif m := re.fullmatch(r"/baike/img/(\d+)\.jpg", path):
            self.image(int(m.group(1)), "w320" if "x-bce-process" in q else "full")
        elif path == "/gbif/v1/species/match":
            self.gbif_match(q.get("name", ""))
        elif path == "/gbif/v1/occurrence/search":
            self.gbif_occurrences(q)
        elif m := re.fullmatch(r"/gbif/media/(\d+)\.jpg", path):
            self.image(int(m.group(1)))
        elif m := re.fullmatch(r"/gbif/occurrence/(\d+)", path):
            self.send(200, _page(f"Occurrence {m.group(1)}", ""))
        elif path == "/shop/click" and q.get("url"):
            self.send(302, b"", headers={"Location": q["url"]})
        elif path == "/shop/search":
            self.shop_search(q.get("q", ""), int(q.get("page", "1")))
        elif m := re.fullmatch(r"/shop/img/(\d+)/(w320|w800)\.jpg", path):
            self.image(int(m.group(1)), "full" if m.group(2) == "w800" else "w320")
        elif m := re.fullmatch(r"/shop/item/(\d+)", path):
            self.send(200, _page(f"Product {m.group(1)}", ""))
        elif path == "/shop/static/blank.gif":
            self.send(200, hostile_files()["tracking-pixel.gif"][0], "image/gif")
        elif m := re.fullmatch(r"/hostile/([\w.-]+)", path):
            self.hostile(m.group(1))
        elif m := re.fullmatch(r"/planted/([\w-]+)/search", path):
            self.planted(m.group(1))
        elif path == "/net/redirect":
            self.send(302, b"", headers={"Location": q.get("to", "/")})
        elif path.startswith(("/net/", "/private/")):
            self.network_case(path)
        else:
            self.not_found()

    def image(self, entry_id: int, size: str = "full") -> None:
        entry = self.site.photos.get(entry_id)
        if entry is None:
            self.not_found()
            return
        self.send(200, self.site.photo_bytes(entry, size), "image/jpeg",
                  {"Cache-Control": "max-age=86400"})

    # --- MediaWiki ----------------------------------------------------------------------------
    def wiki_api(self, lang: str, q: dict[str, str]) -> None:
        titles = q.get("titles", "")
        if titles.startswith("File:"):
            self.send_json(self.imageinfo_for_titles(titles))
        else:
            self.send_json(self.articles(lang, titles))

    def articles(self, lang: str, titles: str) -> dict[str, Any]:
        """Pages by title, normalised (``_`` -> space) and redirected to the article's title
        (the first name the site knows the species by) as MediaWiki answers."""
        normalized, redirects, pages = [], [], []
        for asked in (t for t in titles.split("|") if t):
            title = re.sub(r"\s+", " ", asked.replace("_", " ")).strip()
            if title != asked:
                normalized.append({"fromencoded": False, "from": asked, "to": title})
            hits = self.site.photos.search(title)
            if not hits:
                pages.append({"ns": 0, "title": title, "missing": True})
                continue
            article = self.site.photos.names[hits[0].species]
            if article != title:
                redirects.append({"from": title, "to": article})
            file = hits[0].name.replace(".jpg", "_(lead).jpg").replace(" ", "_")
            pages.append({
                "pageid": 1000 + hits[0].id, "ns": 0, "title": article,
                "contentmodel": "wikitext", "pagelanguage": lang,
                "fullurl": f"{self.base}/wiki/{lang}/wiki/{quote(article.replace(' ', '_'))}",
                "pageimage": file,
                "original": {"source": f"{self.base}/commons/upload/{hits[0].id}/{hits[0].name}",
                             "width": 1024, "height": 768},
            })
        query: dict[str, Any] = {"pages": pages}
        if normalized:
            query["normalized"] = normalized
        if redirects:
            query["redirects"] = redirects
        return {"batchcomplete": True, "query": query}

    def imageinfo_for_titles(self, titles: str) -> dict[str, Any]:
        pages, normalized = [], []
        for i, asked in enumerate(titles.split("|")):
            title = asked.replace("_", " ")  # as MediaWiki lists it: File:A b.jpg
            if title != asked:
                normalized.append({"fromencoded": False, "from": asked, "to": title})
            m = re.match(r"File:Shoal (\d+) ", title)
            entry = self.site.photos.get(int(m.group(1))) if m else None
            if entry is None:
                pages.append({"ns": 6, "title": title, "missing": True, "known": False})
                continue
            name = self.site.photos.names[entry.species]
            pages.append({"pageid": 5000 + entry.id, "ns": 6, "title": title, "index": i,
                          "imagerepository": "shared",
                          "imageinfo": [_mw_imageinfo(self.base, entry, name)]})
        query: dict[str, Any] = {"pages": pages}
        if normalized:
            query["normalized"] = normalized
        return {"batchcomplete": True, "query": query}

    def commons_api(self, q: dict[str, str]) -> None:
        if q.get("titles"):
            self.send_json(self.imageinfo_for_titles(q["titles"]))
            return
        hits = self.site.photos.search(q.get("gsrsearch", "")) if q.get(
            "gsrnamespace") == "6" else []
        offset, limit = int(q.get("gsroffset", "0")), min(int(q.get("gsrlimit", "10")), 500)
        batch = hits[offset:offset + limit]
        if not batch:
            self.send_json({"batchcomplete": True})
            return
        name = self.site.photos.names[batch[0].species]
        pages = [{"pageid": 5000 + e.id, "ns": 6, "title": f"File:{e.name.replace('_', ' ')}",
                  "index": offset + i,
                  "imagerepository": "local", "imageinfo": [_mw_imageinfo(self.base, e, name)]}
                 for i, e in enumerate(batch, 1)]
        if offset == 0 and self.site.hostile:  # files that are no still image
            for j, (title, mime, ext) in enumerate(NOT_STILL, len(pages) + 1):
                info = _mw_imageinfo(self.base, batch[0], name)
                info.update(mime=mime, url=f"{self.base}/commons/upload/0/Shoal_file.{ext}",
                            thumburl=None)
                pages.append({"pageid": 9000 + j, "ns": 6, "title": title, "index": j,
                              "imagerepository": "local", "imageinfo": [info]})
        data: dict[str, Any] = {"batchcomplete": True, "query": {"pages": pages}}
        if offset + limit < len(hits):
            data["continue"] = {"gsroffset": offset + limit, "continue": "gsroffset||"}
        self.send_json(data)

    # --- iNaturalist --------------------------------------------------------------------------
    def inat_taxa(self, q: dict[str, str]) -> None:
        hits = self.site.photos.search(q.get("q", ""))
        results = []
        if hits:
            name = self.site.photos.names[hits[0].species]
            results.append({"id": 40000 + hits[0].id, "name": name, "rank": "species",
                            "rank_level": 10, "iconic_taxon_name": "Actinopterygii",
                            "matched_term": name, "observations_count": len(hits),
                            "is_active": True})
        self.send_json({"total_results": len(results), "page": 1, "per_page": 10,
                        "results": results})

    def inat_observations(self, q: dict[str, str]) -> None:
        first = self.site.photos.get(int(q.get("taxon_id", "0")) - 40000)
        hits = self.site.photos.by_key.get(first.species, []) if first else []
        id_above, per_page = int(q.get("id_above", "0")), min(int(q.get("per_page", "30")), 200)
        todo = [e for e in hits if e.id > id_above][:per_page]
        results = []
        for e in todo:
            code = LICENSES[e.id % len(LICENSES)]
            user = {"id": e.id % 11, "login": f"diver{e.id % 11}", "name": f"Diver {e.id % 11}"}
            right = "no rights reserved" if code == "cc0" else (
                "some rights reserved" if code else "all rights reserved")
            photo = {"id": e.id, "license_code": code,
                     "url": f"{self.base}/inat/photos/{e.id}/square.jpg",
                     "attribution": f"(c) {user['name']}, {right}"
                                    + (f" ({code.upper()})" if code else ""),
                     "original_dimensions": {"width": 1024, "height": 768}}
            results.append({
                "id": e.id, "quality_grade": "research",
                "uri": f"{self.base}/inat/observations/{e.id}",
                "taxon": {"id": 40000 + hits[0].id, "name": self.site.photos.names[e.species],
                          "rank": "species"},
                "user": user, "photos": [photo],
                "observation_photos": [{"id": e.id, "position": 0, "photo": photo}],
            })
        self.send_json({"total_results": len(hits), "page": 1, "per_page": per_page,
                        "results": results})

    # --- GBIF (the shape of ../shared/recorded/gbif) ------------------------------------------
    def gbif_match(self, name: str) -> None:
        hits = self.site.photos.search(name)
        if not hits:
            self.send_json({"confidence": 100, "note": "No match because of too little "
                            "confidence", "matchType": "NONE", "synonym": False})
            return
        latin = self.site.photos.names[hits[0].species]
        key = GBIF_KEY + hits[0].id
        self.send_json({  # the 2025 recording's shape: no class, no classKey
            "usageKey": key, "scientificName": latin, "canonicalName": latin,
            "rank": "SPECIES", "status": "ACCEPTED", "confidence": 99, "matchType": "EXACT",
            "kingdom": "Animalia", "phylum": "Chordata", "order": "Cypriniformes",
            "species": latin, "kingdomKey": 1, "phylumKey": 44, "speciesKey": key,
            "synonym": False})

    def gbif_occurrences(self, q: dict[str, str]) -> None:
        first = self.site.photos.get(int(q.get("taxonKey", "0")) - GBIF_KEY)
        hits = self.site.photos.by_key.get(first.species, []) if first else []
        offset, limit = int(q.get("offset", "0")), min(int(q.get("limit", "20")), 300)
        batch = hits[offset:offset + limit]
        key = GBIF_KEY + hits[0].id if hits else 0
        results = []
        for e in batch:
            code = LICENSES[(e.id + 1) % len(LICENSES)]
            lic = (f"http://creativecommons.org/licenses/{code[3:]}/4.0/" if code and code != "cc0"
                   else "http://creativecommons.org/publicdomain/zero/1.0/" if code else None)
            media = {"type": "StillImage", "format": "image/jpeg",
                     "identifier": f"{self.base}/gbif/media/{e.id}.jpg",
                     "creator": f"Diver {e.id % 11}", "publisher": "Shoal demo museum",
                     "rightsHolder": f"Diver {e.id % 11}"}
            if lic:
                media["license"] = lic
            results.append({
                "key": 900000 + e.id, "datasetKey": "00000000-0000-0000-0000-000000000000",
                "scientificName": self.site.photos.names[e.species], "taxonKey": key,
                "acceptedTaxonKey": key, "speciesKey": key, "kingdom": "Animalia",
                "license": "http://creativecommons.org/licenses/by-nc/4.0/legalcode",
                "media": [media]})
        self.send_json({"offset": offset, "limit": limit,
                        "endOfRecords": offset + limit >= len(hits), "count": len(hits),
                        "results": results, "facets": []})

    # --- Baike --------------------------------------------------------------------------------
    def baike_article(self, name: str) -> None:
        hits = self.site.photos.search(name)
        if not hits:
            self.send(404, _page("百度百科-验证", "<p>抱歉，您所访问的页面不存在...</p>"))
            return
        album = f"/baike/pic/{quote(name)}?page=1"
        first = hits[0].id
        if first % 2:  # today's markup: generated class names, a 268 px thumbnail
            thumb = f"/baike/img/{first}.jpg?x-bce-process=image/resize,m_lfit,w_268,limit_1"
            body = (f"<div class='lemmaSummary_Kx3p9 J-summary'><p>{html.escape(name)} is a "
                    f"fish.</p></div><div class='abstractAlbum_v7Qz2'><a href='{album}'>"
                    f"<img src='{thumb}' alt='{html.escape(name)}'></a></div>")
        else:  # the old markup
            body = (f"<div class='lemma-summary'><p>{html.escape(name)} is a fish.</p></div>"
                    f"<div class='summary-pic'><a href='{album}'>"
                    f"<img src='/baike/img/{first}.jpg' alt='{html.escape(name)}'></a></div>")
        self.send(200, _page(self.site.photos.names[hits[0].species], body))

    def baike_album(self, name: str, page: int) -> None:
        hits = self.site.photos.search(name)[1:]
        batch = hits[(page - 1) * ALBUM_PAGE: page * ALBUM_PAGE]
        imgs = "".join(f"<a class='pic-item' href='#'><img src='/baike/img/{e.id}.jpg'></a>"
                       for e in batch)
        nxt = (f"<a class='album-next' href='/baike/pic/{quote(name)}?page={page + 1}'>下一页</a>"
               if page * ALBUM_PAGE < len(hits) else "")
        self.send(200, _page(f"{name} 图册", f"<div class='pic-list'>{imgs}</div>{nxt}"))

    # --- the shop -----------------------------------------------------------------------------
    def shop_search(self, term: str, page: int) -> None:
        hits = self.site.photos.search(term)
        batch = hits[(page - 1) * SHOP_PAGE: page * SHOP_PAGE]
        items = [self.product(e) for e in batch]
        if hits and page == 1 and self.site.hostile:
            items += [self.product_raw(f"/hostile/{n}", n) for n in hostile_files()]
            cases = NETWORK_CASES + (SIZE_CASES if self.site.size_cases else [])
            items += [self.product_raw(p, p.rsplit("/", 1)[-1]) for p in cases]
            items.append("<li class='product'><a class='title' href='/shop/item/0'>Sold out"
                         "</a><span class='no-photo'></span></li>")  # a card with no picture
        nxt = (f"<a class='next' href='/shop/search?q={quote(term)}&amp;page={page + 1}'>Next</a>"
               if page * SHOP_PAGE < len(hits) else "")
        body = f"<ul class='results'>{''.join(items)}</ul><div class='pager'>{nxt}</div>"
        self.send(200, _page(f"Search: {term}", body))

    def product(self, e: Entry) -> str:
        small, large = f"/shop/img/{e.id}/w320.jpg", f"/shop/img/{e.id}/w800.jpg"
        img = [
            f"<img src='{small}' srcset='{small} 320w, {large} 800w' sizes='50vw'>",
            f"<img class='lazy' src='/shop/static/blank.gif' data-src='{large}'>",
            f"<img src='{small}' data-srcset='{small} 1x, {large} 2x'>",
        ][e.id % 3]
        link = f"/shop/item/{e.id}"
        if e.id % 2:  # an ad's click-tracking redirect wrapping the product page
            link = f"/shop/click?url={quote(self.base + link, safe='')}&amp;ad=1"
        return (f"<li class='product'><a class='title' href='{link}'>"
                f"Fresh <b>{html.escape(self.site.photos.names[e.species])}</b> #{e.id}</a>"
                f"{img}</li>")

    def planted(self, name: str) -> None:
        page = self.site.planted.get(name)
        if page is None:
            self.not_found()
            return
        items = "".join(self.product_raw(url, f"planted {i}") for i, url in enumerate(page.images))
        nxt = (f"<a class='next' href='{html.escape(page.next_page)}'>Next</a>"
               if page.next_page else "")
        self.send(200, _page(f"Planted: {name}",
                             f"<ul class='results'>{items}</ul><div class='pager'>{nxt}</div>"))

    def product_raw(self, url: str, title: str) -> str:
        return (f"<li class='product'><a class='title' href='/shop/item/0'>{html.escape(title)}"
                f"</a><img src='{html.escape(url)}'></li>")

    # --- hostile ------------------------------------------------------------------------------
    def hostile(self, name: str) -> None:
        files = hostile_files()
        if name not in files:
            self.not_found()
            return
        ctype = {".png": "image/png", ".gif": "image/gif", ".svg": "image/svg+xml"}.get(
            Path(name).suffix, "image/jpeg")  # page-as-image.jpg: HTML served as image/jpeg
        self.send(200, files[name][0], ctype)

    def network_case(self, path: str) -> None:
        if path == "/net/loop-a.jpg":
            self.send(302, b"", headers={"Location": "/net/loop-b.jpg"})
        elif path == "/net/loop-b.jpg":
            self.send(302, b"", headers={"Location": "/net/loop-a.jpg"})
        elif path == "/net/slow.jpg":
            deadline = time.monotonic() + self.site.slow_seconds
            while time.monotonic() < deadline and not self.site.stopping.is_set():
                time.sleep(0.05)
            self.send(200, _good_jpeg(), "image/jpeg")
        elif path == "/net/huge.jpg":
            self.huge()
        elif path == "/net/huge-unsized.jpg":
            self.huge(sized=False)
        elif path == "/net/gzip-bomb.jpg":
            self.send(200, _gzip_bomb(), "image/jpeg", headers={"Content-Encoding": "gzip"})
        elif path.startswith("/private/"):
            self.send(200, _good_jpeg(), "image/jpeg")
        else:
            self.not_found()

    def huge(self, sized: bool = True) -> None:
        """A body over the size cap, announced by its Content-Length or (``sized=False``) not:
        then it ends only when the connection closes."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if sized:
            self.send_header("Content-Length", str(HUGE_BYTES))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        chunk = _good_jpeg().ljust(1 << 20, b"\0")
        sent = 0
        while sent < HUGE_BYTES and not self.site.stopping.is_set():
            self.wfile.write(chunk)
            sent += len(chunk)


@lru_cache(maxsize=1)
def _gzip_bomb() -> bytes:
    """About 64 KiB on the wire that inflates to 64 MiB (over the size cap) of a JPEG's bytes
    padded with zeros: only ``Content-Encoding: gzip`` makes it large."""
    gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # a gzip member
    zeros = bytes(1 << 20)
    parts = [gz.compress(_good_jpeg())]
    parts += [gz.compress(zeros) for _ in range(HUGE_BYTES >> 20)]
    return b"".join(parts) + gz.flush()


@lru_cache(maxsize=1)
def _good_jpeg() -> bytes:
    img = Image.linear_gradient("L").resize((200, 150)).convert("RGB")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    site: Site

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that gave up (timeout, size cap) is part of the test
        super().handle_error(request, client_address)


@dataclass
class TestSite:
    base_url: str
    site: Site
    photo_root: Path

    def env(self) -> dict[str, str]:
        """``SHOAL_CRAWL_SITE_*`` overrides that point every spider (and profile) here, and the
        loopback tuning that makes a crawl of it quick and deterministic: no AutoThrottle, no
        retries, a download timeout shorter than the slow response, and this site's own
        loopback address and port (only that) allowed to the crawler."""
        b = self.base_url
        sites = {"wikipedia_en": f"{b}/wiki/en", "wikipedia_zh": f"{b}/wiki/zh",
                 "commons": f"{b}/commons", "inaturalist_api": f"{b}/inat/v1",
                 "gbif_api": f"{b}/gbif/v1", "gbif": f"{b}/gbif",
                 "baike": f"{b}/baike", "shop_market": f"{b}/shop"}
        env = {site_env_name(k): v for k, v in sites.items()}
        env.update(SHOAL_CRAWL_AUTOTHROTTLE="0", SHOAL_CRAWL_RETRY_TIMES="0",
                   SHOAL_CRAWL_DOWNLOAD_TIMEOUT=str(max(1.0, self.site.slow_seconds / 2)),
                   SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS=self.address)
        return env

    @property
    def address(self) -> str:
        """``ADDR:PORT`` of this site, as ``SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS`` takes it."""
        return urlsplit(self.base_url).netloc

    def plant(self, name: str, images: list[str], next_page: str | None = None) -> str:
        """Serve ``images`` (and ``next_page``) at ``/planted/NAME/search``; its base URL."""
        self.site.planted[name] = Planted(tuple(images), next_page)
        return f"{self.base_url}/planted/{name}"

    def requested(self, prefix: str = "/") -> list[tuple[str, str]]:
        """The (Host, path) of every request for a path starting with ``prefix``."""
        return [(host, path) for host, path in list(self.site.log) if path.startswith(prefix)]

    @property
    def photos(self) -> Photos:
        return self.site.photos

    @property
    def requests(self) -> int:
        return self.site.requests

    def shop_urls(self, term: str) -> list[str]:
        """The image URLs a complete shop crawl of ``term`` finds."""
        return [f"{self.base_url}/shop/img/{e.id}/w800.jpg" for e in self.photos.search(term)]


@contextmanager
def serve(photo_root: Path, species_map: dict[str, Path] | None = None, port: int = 0, *,
          variants: int = 1, hostile: bool = True, slow_seconds: float = 5.0,
          prepare: bool = False, size_cases: bool = False) -> Iterator[TestSite]:
    """Serve ``species_map`` (default: every sub-folder of ``photo_root`` by its name)."""
    root = Path(photo_root)
    if species_map is None:
        species_map = {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}
    site = Site(Photos.build(species_map, max(1, variants)), hostile=hostile,
                slow_seconds=slow_seconds, size_cases=size_cases)
    if hostile:
        hostile_files()  # built once, before the first request waits for the PNG bomb
    if size_cases:
        _gzip_bomb()  # likewise
    if prepare:
        site.prepare()
    server = _Server(("127.0.0.1", port), Handler)
    server.site = site
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="shoal-testsite", daemon=True)
    thread.start()
    host, bound = server.server_address[:2]
    try:
        yield TestSite(f"http://{host}:{bound}", site, root)
    finally:
        site.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

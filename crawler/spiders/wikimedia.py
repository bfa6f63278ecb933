"""Wikipedia (en, zh) lead images and Wikimedia Commons files, through the MediaWiki Action API.

Articles are asked for by title, one name at a time (``titles=NAME&redirects=1`` with
``prop=pageimages|info``): the wiki answers with a ``normalized`` block (``A_b`` -> ``A b``) and
a ``redirects`` block (a Latin name -> the article under its common name), and the page under
its final title; a ``missing`` page is ``not_found``. Each article's lead image (``pageimage``,
a file name with underscores) is then asked for with ``prop=imageinfo`` and
``iiprop=url|size|mime|extmetadata``; that answer is normalised again, so the article of each
file is looked up through the ``normalized`` block. Commons is searched in the File namespace
(``generator=search&gsrnamespace=6``), paged with ``continue``; a file whose title, object
name, description and categories name none of the species' scientific names is
``wrong_taxon``. Both ``formatversion=2`` (``pages`` a list) and 1 (an object keyed by page
id) are read. Files that are no still image (video, PDF, SVG, DjVu, audio: by ``mime``, else
by the file name) are ``not_an_image_type``; files with no ``url`` are ``no_url``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from scrapy.http import Response

from crawler.html import clean_text
from crawler.sites import DEFAULT_SITES, site_url
from crawler.spiders.base import ShoalSpider
from crawler.stats import Drop

WIKIS = {"wikipedia_en": ("la", "en"), "wikipedia_zh": ("zh", "la")}
IMAGEINFO = {
    "prop": "imageinfo",
    "iiprop": "url|size|mime|extmetadata",
    "iiurlwidth": "2048",  # big originals come scaled by the wiki's own thumbnailer
    "iiextmetadatafilter": "LicenseShortName|LicenseUrl|Artist|ObjectName|UsageTerms|"
                           "ImageDescription|Categories",
}
BASE = {"action": "query", "format": "json", "formatversion": "2"}
STILL_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".tif", ".tiff",
                        ".bmp"}
NOT_STILL_MIMES = ("image/svg", "image/vnd.djvu", "image/x-djvu")


def api_url(site: str, **params: str) -> str:
    return f"{site_url(site)}/w/api.php?{urlencode({**BASE, **params})}"


def _meta(ext: dict[str, Any], key: str) -> str | None:
    value = (ext.get(key) or {}).get("value")
    return value if isinstance(value, str) and value.strip() else None


def pages_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """``query.pages`` in answer order: a list (formatversion 2) or an object (1)."""
    pages = (data.get("query") or {}).get("pages") or []
    if isinstance(pages, dict):
        pages = list(pages.values())
    return sorted(pages, key=lambda p: p.get("index", 0))


def final_titles(data: dict[str, Any]) -> dict[str, str]:
    """Asked title -> the title the answer lists it under, through ``normalized`` (and
    ``converted``) then ``redirects``."""
    query = data.get("query") or {}
    step = {n["from"]: n["to"] for key in ("normalized", "converted")
            for n in query.get(key) or [] if "from" in n and "to" in n}
    redirects = {r["from"]: r["to"] for r in query.get("redirects") or []
                 if "from" in r and "to" in r}
    out: dict[str, str] = {}
    for asked in {*step, *redirects}:
        title, seen = asked, 0
        while seen < 8 and (title in step or title in redirects):
            title = step.get(title) or redirects[title]
            seen += 1
        out[asked] = title
    return out


def is_still_image(info: dict[str, Any], title: str) -> bool:
    mime = (info.get("mime") or "").lower()
    if mime:
        return mime.startswith("image/") and not mime.startswith(NOT_STILL_MIMES)
    name = urlsplit(info.get("url") or "").path or title
    return PurePosixPath(unquote(name)).suffix.lower() in STILL_IMAGE_SUFFIXES


class WikimediaSpider(ShoalSpider):
    name = "wikimedia"
    site_keys = (*WIKIS, "commons")
    commons_batch = 50
    hosts = ("en.wikipedia.org", "zh.wikipedia.org", "commons.wikimedia.org",
             "upload.wikimedia.org")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.described: set[str] = set()  # files whose imageinfo came (prop continuation)

    def initial_requests(self) -> Iterator[Any]:
        for wiki, languages in WIKIS.items():
            for word in self.keywords(languages):
                params = {"titles": word, "redirects": "1", "prop": "pageimages|info",
                          "piprop": "name|original", "inprop": "url"}
                yield self.page(api_url(wiki, **params), self.parse_articles,
                                cb_kwargs={"wiki": wiki, "keyword": word})
        for word in self.keywords(("la", "en")):
            yield self.commons_search(word, {})

    def commons_search(self, word: str, cont: dict[str, str]) -> Any:
        params = {"generator": "search", "gsrsearch": word, "gsrnamespace": "6",
                  "gsrlimit": str(self.commons_batch), **IMAGEINFO, **cont}
        return self.page(api_url("commons", **params), self.parse_files,
                         cb_kwargs={"site": "commons", "keyword": word, "search": True})

    def parse_articles(self, response: Response, wiki: str, keyword: str) -> Iterator[Any]:
        self.page_ok(response)
        files: dict[str, str] = {}  # "File:Name_as_given.jpg" -> article page URL
        for page in pages_of(response.json()):
            if page.get("missing") is not None and page.get("missing") is not False:
                self.drop(Drop.NOT_FOUND)
                continue
            if not page.get("pageimage"):
                self.crawler.stats.inc_value("shoal/articles_without_picture")
                continue
            files[f"File:{page['pageimage']}"] = page.get("fullurl") or page.get("title", "")
        if files and not self.full:
            params = {"titles": "|".join(files), **IMAGEINFO}
            yield self.page(api_url(wiki, **params), self.parse_files,
                            cb_kwargs={"site": wiki, "keyword": keyword, "articles": files})

    def parse_files(self, response: Response, site: str, keyword: str,
                    articles: dict[str, str] | None = None, search: bool = False) -> Iterator[Any]:
        self.page_ok(response)
        data = response.json()
        # the answer lists "File:A b.jpg" for the "File:A_b.jpg" asked for: find each article
        by_title = {final_titles(data).get(asked, asked): page
                    for asked, page in (articles or {}).items()}
        for page in pages_of(data):
            if (item := self.file_item(page, response, site, keyword, by_title, search)):
                yield item
        cont = data.get("continue")
        if search and cont and not self.full:
            yield self.commons_search(keyword, {k: str(v) for k, v in cont.items()})

    def file_item(self, page: dict[str, Any], response: Response, site: str, keyword: str,
                  articles: dict[str, str], search: bool) -> Any:
        title = page.get("title") or ""
        if "imageinfo" not in page:  # another part of a batch carries it (prop continuation)
            if title not in self.described:
                self.drop(Drop.NO_URL)
            return None
        self.described.add(title)
        info = (page.get("imageinfo") or [{}])[0]
        if not is_still_image(info, title):
            self.drop(Drop.NOT_AN_IMAGE_TYPE)
            return None
        ext = info.get("extmetadata") or {}
        if search and not self.mentions_species(
                title, _meta(ext, "ObjectName"), clean_text(_meta(ext, "ImageDescription")),
                _meta(ext, "Categories")):
            self.drop(Drop.WRONG_TAXON)
            return None
        return self.emit(
            info.get("thumburl") or info.get("url"), response,
            page_url=articles.get(title) or info.get("descriptionurl"),
            site=urlsplit(DEFAULT_SITES[site]).netloc,
            license=_meta(ext, "LicenseShortName") or _meta(ext, "UsageTerms"),
            license_url=_meta(ext, "LicenseUrl"),
            artist=clean_text(_meta(ext, "Artist")),
            title=clean_text(_meta(ext, "ObjectName")) or title or None,
            keyword=keyword,
        )

"""Wikipedia (en, zh) page images and Wikimedia Commons files, through the MediaWiki Action API.

Shapes (``formatversion=2``): ``generator=search`` + ``prop=pageimages`` gives each article's
lead image name; ``prop=imageinfo`` with ``iiprop=url|size|mime|extmetadata`` gives the file's
URL, a scaled ``thumburl`` (``iiurlwidth``), its description page and the license/artist.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from scrapy.http import Response

from crawler.html import clean_text
from crawler.sites import DEFAULT_SITES, site_url
from crawler.spiders.base import ShoalSpider

WIKIS = {"wikipedia_en": ("la", "en"), "wikipedia_zh": ("zh", "la")}
IMAGEINFO = {
    "prop": "imageinfo",
    "iiprop": "url|size|mime|extmetadata",
    "iiurlwidth": "2048",  # big originals come scaled by the wiki's own thumbnailer
    "iiextmetadatafilter": "LicenseShortName|LicenseUrl|Artist|ObjectName|UsageTerms",
}
BASE = {"action": "query", "format": "json", "formatversion": "2"}


def api_url(site: str, **params: str) -> str:
    return f"{site_url(site)}/w/api.php?{urlencode({**BASE, **params})}"


def _meta(ext: dict[str, Any], key: str) -> str | None:
    value = (ext.get(key) or {}).get("value")
    return value if isinstance(value, str) and value.strip() else None


class WikimediaSpider(ShoalSpider):
    name = "wikimedia"
    search_limit = 10
    commons_batch = 50

    def initial_requests(self) -> Iterator[Any]:
        for wiki, languages in WIKIS.items():
            for word in self.keywords(languages):
                params = {"generator": "search", "gsrsearch": word,
                          "gsrlimit": str(self.search_limit), "prop": "pageimages|info",
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
        pages = response.json().get("query", {}).get("pages", [])
        files: dict[str, str] = {}
        for page in sorted(pages, key=lambda p: p.get("index", 0)):
            if page.get("pageimage"):
                files[f"File:{page['pageimage']}"] = page.get("fullurl") or page.get("title", "")
        if files and not self.full:
            params = {"titles": "|".join(files), **IMAGEINFO}
            yield self.page(api_url(wiki, **params), self.parse_files,
                            cb_kwargs={"site": wiki, "keyword": keyword, "articles": files})

    def parse_files(self, response: Response, site: str, keyword: str,
                    articles: dict[str, str] | None = None, search: bool = False) -> Iterator[Any]:
        self.page_ok(response)
        data = response.json()
        pages = data.get("query", {}).get("pages", [])
        for page in sorted(pages, key=lambda p: p.get("index", 0)):
            info = (page.get("imageinfo") or [{}])[0]
            mime = info.get("mime") or ""
            url = info.get("thumburl") or info.get("url")
            if not url or not mime.startswith("image/"):
                continue
            ext = info.get("extmetadata") or {}
            item = self.emit(
                url, response,
                page_url=(articles or {}).get(page.get("title", "")) or info.get("descriptionurl"),
                site=urlsplit(DEFAULT_SITES[site]).netloc,
                license=_meta(ext, "LicenseShortName") or _meta(ext, "UsageTerms"),
                license_url=_meta(ext, "LicenseUrl"),
                artist=clean_text(_meta(ext, "Artist")),
                title=clean_text(_meta(ext, "ObjectName")) or page.get("title"),
                keyword=keyword,
            )
            if item is not None:
                yield item
        cont = data.get("continue")
        if search and cont and not self.full:
            yield self.commons_search(keyword, {k: str(v) for k, v in cont.items()})

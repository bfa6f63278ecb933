"""An encyclopedia spider driven by a site profile: the article's summary picture and album.

Selectors are lists of alternatives (the old ``summary-pic`` layout and today's generated
class names such as ``abstractAlbum_…``); the summary picture's thumbnail transform is taken
off its URL (``image_url_drop_params`` / ``image_url_rewrites``) so the full picture is fetched.
An article whose title is none of the species' names and whose text names none of its
scientific names is another taxon (``wrong_taxon``); a missing article is ``not_found``; an
article page where no selector finds a picture is counted (``articles_without_picture``) so a
changed layout shows as a warning, not as an empty success.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scrapy.http import Response

from crawler.html import best_image_url, first_match, first_value
from crawler.spiders.base import ProfileSpider
from crawler.stats import Drop


class BaikeSpider(ProfileSpider):
    name = "baike"
    profile_kind = "encyclopedia"
    default_profile = "baike"

    def initial_requests(self) -> Iterator[Any]:
        for word in self.keywords():
            # a missing article is an answer (no images), not a failed page
            yield self.page(self.profile.url_for(word), self.parse_article,
                            cb_kwargs={"keyword": word}, meta={"handle_httpstatus_list": [404]})

    def _item(self, img: Any, response: Response, keyword: str, title: str | None) -> Any:
        url = best_image_url(img)
        return self.emit(self.profile.full_image_url(response.urljoin(url)) if url else None,
                         response, site=self.profile.site, license=self.profile.license,
                         title=title, keyword=keyword)

    def parse_article(self, response: Response, keyword: str) -> Iterator[Any]:
        self.page_ok(response)
        if response.status == 404:
            self.drop(Drop.NOT_FOUND)
            return
        sel = self.profile.article
        assert sel is not None
        title = first_value(response, sel.title) or keyword
        summary = first_match(response, sel.summary_image)[:1]
        album = first_value(response, sel.album_link)
        if not summary and not album:
            self.crawler.stats.inc_value("shoal/articles_without_picture")
            return
        if not self.is_known_name(title) and not self.mentions_species(
                " ".join(response.css("body ::text").getall())):
            self.drop(Drop.WRONG_TAXON, len(summary) + bool(album))
            return
        for img in summary:
            if (item := self._item(img, response, keyword, title)) is not None:
                yield item
        if album and sel.album_image and not self.full:
            yield self.page(response.urljoin(album), self.parse_album,
                            cb_kwargs={"keyword": keyword, "title": title, "n": 1})

    def parse_album(self, response: Response, keyword: str, title: str, n: int) -> Iterator[Any]:
        self.page_ok(response)
        sel = self.profile.article
        assert sel is not None
        for img in first_match(response, sel.album_image):
            if (item := self._item(img, response, keyword, title)) is not None:
                yield item
        nxt = first_value(response, sel.album_next)
        if nxt and n < self.profile.max_pages and not self.full:
            yield self.page(response.urljoin(nxt), self.parse_album,
                            cb_kwargs={"keyword": keyword, "title": title, "n": n + 1})

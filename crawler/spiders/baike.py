"""An encyclopedia spider driven by a site profile: the article's summary picture and album."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scrapy.http import Response

from crawler.html import best_image_url
from crawler.spiders.base import ProfileSpider


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
        return self.emit(best_image_url(img), response, site=self.profile.site,
                         license=self.profile.license, title=title, keyword=keyword)

    def parse_article(self, response: Response, keyword: str) -> Iterator[Any]:
        self.page_ok(response)
        if response.status == 404:
            return
        sel = self.profile.article
        assert sel is not None
        title = (response.css(sel.title).get() or "").strip() or keyword if sel.title else keyword
        if sel.summary_image:
            for img in response.css(sel.summary_image)[:1]:
                if (item := self._item(img, response, keyword, title)) is not None:
                    yield item
        album = response.css(sel.album_link).get() if sel.album_link else None
        if album and sel.album_image and not self.full:
            yield self.page(response.urljoin(album), self.parse_album,
                            cb_kwargs={"keyword": keyword, "title": title, "n": 1})

    def parse_album(self, response: Response, keyword: str, title: str, n: int) -> Iterator[Any]:
        self.page_ok(response)
        sel = self.profile.article
        assert sel is not None and sel.album_image
        for img in response.css(sel.album_image):
            if (item := self._item(img, response, keyword, title)) is not None:
                yield item
        nxt = response.css(sel.album_next).get() if sel.album_next else None
        if nxt and n < self.profile.max_pages and not self.full:
            yield self.page(response.urljoin(nxt), self.parse_album,
                            cb_kwargs={"keyword": keyword, "title": title, "n": n + 1})

"""A shop search spider driven by a YAML site profile (``crawler/profiles/<name>.yaml``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scrapy.http import Response

from crawler.html import best_image_url
from crawler.spiders.base import ProfileSpider


class ShopSpider(ProfileSpider):
    name = "shop"
    profile_kind = "shop"

    def initial_requests(self) -> Iterator[Any]:
        for word in self.keywords():
            yield self.page(self.profile.url_for(word), self.parse_results,
                            cb_kwargs={"keyword": word, "n": 1})

    def parse_results(self, response: Response, keyword: str, n: int) -> Iterator[Any]:
        self.page_ok(response)
        sel = self.profile.shop
        assert sel is not None
        for product in response.css(sel.item):
            img = product.css(sel.image)
            if not img:
                continue
            link = product.css(sel.link).get() if sel.link else None
            title = product.css(sel.title).get() if sel.title else None
            item = self.emit(
                best_image_url(img[0]), response,
                page_url=response.urljoin(link) if link else response.url,
                site=self.profile.site, license=self.profile.license,
                title=title.strip() if title else None, keyword=keyword,
            )
            if item is not None:
                yield item
        nxt = response.css(sel.next_page).get() if sel.next_page else None
        if nxt and n < self.profile.max_pages and not self.full:
            yield self.page(response.urljoin(nxt), self.parse_results,
                            cb_kwargs={"keyword": keyword, "n": n + 1})

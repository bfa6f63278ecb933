"""A shop search spider driven by a YAML site profile (``crawler/profiles/<name>.yaml``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scrapy.http import Response

from crawler.html import best_image_url, first_match, first_value
from crawler.spiders.base import ProfileSpider
from crawler.stats import Drop


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
        for product in first_match(response, sel.item):
            img = first_match(product, sel.image)
            if not img:
                self.drop(Drop.NO_URL)  # a result card without a picture
                continue
            url = best_image_url(img[0])
            link = first_value(product, sel.link)
            link = response.urljoin(link) if link else None
            page = self.profile.unwrap_link(link) if link else response.url
            item = self.emit(
                self.profile.full_image_url(response.urljoin(url)) if url else None, response,
                page_url=page, link_url=link if link and link != page else None,
                site=self.profile.site, license=self.profile.license,
                title=first_value(product, sel.title), keyword=keyword,
            )
            if item is not None:
                yield item
        nxt = first_value(response, sel.next_page)
        if nxt and n < self.profile.max_pages and not self.full:
            yield self.page(response.urljoin(nxt), self.parse_results,
                            cb_kwargs={"keyword": keyword, "n": n + 1})

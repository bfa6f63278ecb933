"""One spider per kind of source; they only parse and yield ``ImageItem``s."""

from __future__ import annotations

from crawler.spiders.baike import BaikeSpider
from crawler.spiders.base import ShoalSpider
from crawler.spiders.inaturalist import INaturalistSpider
from crawler.spiders.shop import ShopSpider
from crawler.spiders.wikimedia import WikimediaSpider

SPIDERS: dict[str, type[ShoalSpider]] = {
    "wikimedia": WikimediaSpider,
    "inaturalist": INaturalistSpider,
    "baike": BaikeSpider,
    "shop": ShopSpider,
}

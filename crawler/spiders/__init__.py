"""One spider per kind of source; they only parse and yield ``ImageItem``s."""

from __future__ import annotations

from crawler.spiders.baike import BaikeSpider
from crawler.spiders.base import ShoalSpider
from crawler.spiders.gbif import GbifSpider
from crawler.spiders.inaturalist import INaturalistSpider
from crawler.spiders.shop import ShopSpider
from crawler.spiders.wikimedia import WikimediaSpider

SPIDERS: dict[str, type[ShoalSpider]] = {
    "wikimedia": WikimediaSpider,
    "inaturalist": INaturalistSpider,
    "gbif": GbifSpider,
    "baike": BaikeSpider,
    "shop": ShopSpider,
}

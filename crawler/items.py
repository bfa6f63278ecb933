"""What spiders yield: one image URL with where it was found and under which terms."""

from __future__ import annotations

import scrapy


class ImageItem(scrapy.Item):
    # ``image_urls``/``images`` are the media-pipeline conventions, so Scrapy's stock
    # ImagesPipeline can run on the very same items (the benchmark does exactly that)
    image_urls = scrapy.Field()  # list with the one URL to fetch
    images = scrapy.Field()  # filled by the pipeline: one result per URL
    page_url = scrapy.Field()
    link_url = scrapy.Field()  # the page link as found, when page_url was unwrapped from it
    site = scrapy.Field()
    license = scrapy.Field()
    license_url = scrapy.Field()
    artist = scrapy.Field()
    title = scrapy.Field()
    keyword = scrapy.Field()


def image_item(url: str, **meta: str | None) -> ImageItem:
    item = ImageItem(image_urls=[url])
    for key, value in meta.items():
        if value:
            item[key] = value
    return item

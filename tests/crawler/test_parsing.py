"""The small pure parts: srcset choice, iNaturalist sizes, sources, profiles, failure reasons."""

from __future__ import annotations

import pytest
from parsel import Selector
from scrapy.exceptions import DownloadCancelledError, DownloadTimeoutError, IgnoreRequest

from catalog.imaging import Reject
from crawler.failures import classify
from crawler.html import best_image_url, clean_text, parse_srcset
from crawler.profiles import ProfileError, load_profile
from crawler.sites import site_url
from crawler.sources import UnknownSource, all_sources, spider_for
from crawler.spiders.inaturalist import larger_photo_url


def _img(markup: str) -> Selector:
    return Selector(text=markup).css("img")[0]


@pytest.mark.parametrize(("markup", "expected"), [
    ("<img src='s.jpg' srcset='s.jpg 320w, l.jpg 800w, m.jpg 640w'>", "l.jpg"),
    ("<img src='blank.gif' data-src='real.jpg'>", "real.jpg"),
    ("<img src='s.jpg' data-srcset='s.jpg 1x, big.jpg 2x'>", "big.jpg"),
    ("<img src='data:image/gif;base64,R0lGOD' data-original='o.jpg'>", "o.jpg"),
    ("<img src='only.jpg'>", "only.jpg"),
    ("<img src='data:image/gif;base64,R0lGOD'>", None),
])
def test_best_image_url_prefers_the_largest_real_source(markup, expected):
    assert best_image_url(_img(markup)) == expected


def test_parse_srcset_reads_descriptors():
    assert parse_srcset("a.jpg 1x, b.jpg 2.5x, c.jpg") == [("a.jpg", 1.0), ("b.jpg", 2.5),
                                                           ("c.jpg", 1.0)]


def test_clean_text_strips_mediawiki_artist_html():
    assert clean_text("<a href='//x'>Jane  <b>Doe</b></a>\n") == "Jane Doe"
    assert clean_text("") is None


def test_inaturalist_square_url_becomes_large():
    url = "https://inaturalist-open-data.s3.amazonaws.com/photos/123/square.jpeg"
    assert larger_photo_url(url).endswith("/photos/123/large.jpeg")
    assert larger_photo_url("https://x/photo.jpg") == "https://x/photo.jpg"


def test_sources_and_profiles(monkeypatch, tmp_path):
    assert {"wikimedia", "inaturalist", "baike", "shop:market"} <= set(all_sources())
    assert spider_for("shop:market")[1] == {"profile": "market"}
    for bad in ("flickr", "shop", "shop:nope", "wikimedia:x", "baike:market"):
        with pytest.raises(UnknownSource):
            spider_for(bad)
    # a new shop is a profile in a folder of SHOAL_CRAWL_PROFILE_DIRS, not code
    (tmp_path / "fishmonger.yaml").write_text(
        "name: fishmonger\nkind: shop\nsite: fishmonger.example\n"
        "base_url: https://fishmonger.example\nsearch_url: '{base}/find/{keyword}'\n"
        "shop: {item: div.card}\n")
    (tmp_path / "broken.yaml").write_text("name: broken\nkind: shop\n")
    monkeypatch.setenv("SHOAL_CRAWL_PROFILE_DIRS", str(tmp_path))
    assert "shop:fishmonger" in all_sources()
    profile = load_profile("fishmonger", kind="shop")
    assert profile.url_for("大黄鱼") == "https://fishmonger.example/find/%E5%A4%A7%E9%BB%84%E9%B1%BC"
    monkeypatch.setenv("SHOAL_CRAWL_SITE_SHOP_FISHMONGER", "http://127.0.0.1:9/")
    assert profile.url_for("a b") == "http://127.0.0.1:9/find/a%20b"
    with pytest.raises(ProfileError, match="invalid profile"):
        load_profile("broken")


def test_site_url_override(monkeypatch):
    assert site_url("commons") == "https://commons.wikimedia.org"
    monkeypatch.setenv("SHOAL_CRAWL_SITE_COMMONS", "http://127.0.0.1:8/commons/")
    assert site_url("commons") == "http://127.0.0.1:8/commons"


@pytest.mark.parametrize(("exc", "reason"), [
    (IgnoreRequest("Forbidden by robots.txt"), Reject.ROBOTS_DISALLOWED),
    (IgnoreRequest("max redirections reached"), Reject.REDIRECT_LOOP),
    (DownloadTimeoutError("took longer than 2 seconds"), Reject.TIMEOUT),
    (DownloadCancelledError("larger than download max size (10)"), Reject.TOO_LARGE),
    (ConnectionRefusedError("refused"), Reject.NETWORK_ERROR),
])
def test_classify_failures(exc, reason):
    assert classify(exc).reason == reason


def test_spiders_search_every_keyword_unfiltered(monkeypatch):
    """Start requests are never dupe-filtered, so a resumed crawl (JOBDIR) searches again."""
    import asyncio

    from crawler.spiders import SPIDERS

    monkeypatch.setenv("SHOAL_CRAWL_SITE_SHOP_MARKET", "http://127.0.0.1:9/shop")
    species = {"slug": "hairtail", "latin_name": "Trichiurus japonicus",
               "keywords": {"zh": ["带鱼", "刀鱼"], "en": ["Largehead hairtail"]}}

    async def first(spider):
        return [r async for r in spider.start()]

    shop = asyncio.run(first(SPIDERS["shop"](species=species, profile="market")))
    assert [r.url for r in shop] == [
        "http://127.0.0.1:9/shop/search?q=%E5%B8%A6%E9%B1%BC",
        "http://127.0.0.1:9/shop/search?q=%E5%88%80%E9%B1%BC",
        "http://127.0.0.1:9/shop/search?q=Largehead%20hairtail",
        "http://127.0.0.1:9/shop/search?q=Trichiurus%20japonicus"]
    assert all(r.dont_filter for r in shop)
    wiki = asyncio.run(first(SPIDERS["wikimedia"](species=species)))
    assert len(wiki) == 2 + 3 + 2  # en: Latin+English, zh: 2 Chinese+Latin, Commons: 2
    assert all("formatversion=2" in r.url and r.dont_filter for r in wiki)

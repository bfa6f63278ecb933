"""Hostile-world fixtures. The crawler's: the local test site, a second server, a planted shop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.demo.site.server import TestSite, serve
from pipeline.demo.site.species import latin_species_map
from tests.crawler.conftest import FOLDERS, point_at


@pytest.fixture(scope="module")
def crawl_site(fishdata: Path) -> Iterator[TestSite]:
    web20 = fishdata / "web-20"
    with serve(web20, latin_species_map(web20, FOLDERS), hostile=False) as running:
        yield running


@pytest.fixture(scope="module")
def other_server(fishdata: Path) -> Iterator[TestSite]:
    """A second server on loopback (another port): another host, for robots.txt and for the
    addresses a hostile page points the crawler at."""
    with serve(fishdata / "web-20", {}, hostile=False) as running:
        yield running


@pytest.fixture
def crawl_env(sqlite_env, crawl_site: TestSite, monkeypatch: pytest.MonkeyPatch) -> TestSite:
    """SQLite catalog, the spiders pointed at the test site (only its address allowed)."""
    point_at(crawl_site, monkeypatch)
    return crawl_site


def planted_shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, base_url: str,
                 image_hosts: list[str] | None = None, max_pages: int = 3) -> str:
    """A shop profile NAME over a planted page; its source name."""
    monkeypatch.setenv("SHOAL_CRAWL_PROFILE_DIRS", str(tmp_path))
    hosts = ", ".join(f'"{h}"' for h in image_hosts or [])
    (tmp_path / f"{name}.yaml").write_text(
        f"name: {name}\nkind: shop\nsite: {name}.example\nbase_url: {base_url}\n"
        f"search_url: '{{base}}/search?q={{keyword}}'\nlanguages: [la]\nmax_pages: {max_pages}\n"
        f"image_hosts: [{hosts}]\n"
        "shop: {item: 'ul.results li.product', image: img, title: 'a.title::text',"
        " next_page: 'a.next::attr(href)'}\n", encoding="utf-8")
    return f"shop:{name}"

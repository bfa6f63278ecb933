"""Downloads over the size cap, announced or not, and a gzip bomb: each recorded as
``too_large`` on its URL (Scrapy reports the last two as a cancel and an ignored request)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.db import session_scope
from catalog.imaging import Reject
from catalog.models import ImageSource
from catalog.settings import get_settings
from crawler.runner import run_crawl
from pipeline.demo.site import server as demo_site
from pipeline.demo.site.species import latin_species_map
from tests.crawler.conftest import FOLDERS, point_at

CAP = 4 * 1024 * 1024  # far below the 64 MiB bodies, so each is cut well within the timeout
OVER_SIZE = ["/net/huge.jpg", "/net/huge-unsized.jpg", "/net/gzip-bomb.jpg"]


@pytest.fixture
def size_site(sqlite_env, fishdata: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[demo_site.TestSite]:
    web20 = fishdata / "web-20"
    with demo_site.serve(web20, latin_species_map(web20, FOLDERS), slow_seconds=4,
               size_cases=True) as running:
        point_at(running, monkeypatch)
        monkeypatch.setenv("SHOAL_MAX_BYTES", str(CAP))
        get_settings.cache_clear()
        yield running
    get_settings.cache_clear()


def test_over_size_bodies_and_a_gzip_bomb_are_too_large(size_site: demo_site.TestSite) -> None:
    assert demo_site.HUGE_BYTES > CAP
    run_crawl("mola", "shop:market")
    with session_scope() as s:
        sources = {src.url.removeprefix(size_site.base_url): src for src in s.scalars(
            select(ImageSource).where(ImageSource.url.like("%/net/%")))}
    for path in OVER_SIZE:
        assert sources[path].error == Reject.TOO_LARGE, (path, sources[path].error_detail)
        assert sources[path].image_id is None
    assert "DOWNLOAD_MAXSIZE" in sources["/net/gzip-bomb.jpg"].error_detail
    assert "over the download size cap" in sources["/net/huge-unsized.jpg"].error_detail

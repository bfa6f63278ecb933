"""robots.txt is obeyed by every request, also those that arrive together at a new host.

Scrapy 2.19's RobotsTxtMiddleware let all but two of the concurrent first requests to a host
through unchecked while that host's robots.txt was being fetched (crawler/robots.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.db import session_scope
from catalog.imaging import Reject
from catalog.models import CrawlJob, ImageSource, JobState
from crawler.runner import run_crawl
from tests.hostile.conftest import planted_shop

DISALLOWED = 8  # images under the second host's /private/, all found on one page


def test_concurrent_first_requests_to_a_new_host_all_obey_robots(
        crawl_env, other_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = [f"{other_server.base_url}/private/{i}.jpg" for i in range(DISALLOWED)]
    allowed = f"{other_server.base_url}/shop/static/blank.gif"  # robots.txt allows this one
    base = crawl_env.plant("robots", [*images, allowed])
    monkeypatch.setenv("SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS",
                       f"{crawl_env.address},{other_server.address}")
    monkeypatch.setenv("SHOAL_CRAWL_CONCURRENCY_PER_DOMAIN", "16")
    crawl_job_id = run_crawl("mola", planted_shop(tmp_path, monkeypatch, "robotshop", base))

    assert other_server.requested("/private/") == []  # not one disallowed image was fetched
    assert len(other_server.requested("/robots.txt")) == 1
    assert len(other_server.requested("/shop/static/blank.gif")) == 1
    with session_scope() as s:
        job = s.get(CrawlJob, crawl_job_id)
        assert job is not None and job.state == JobState.SUCCEEDED
        assert job.stats["rejected"].get(Reject.ROBOTS_DISALLOWED) == DISALLOWED
        errors = dict(s.execute(select(ImageSource.url, ImageSource.error)
                                .where(ImageSource.url.in_(images))).all())
    assert errors == dict.fromkeys(images, Reject.ROBOTS_DISALLOWED)

"""Scrapy settings for one crawl, in one place (the Scrapy project convention)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from catalog.imaging import Limits
from catalog.settings import CrawlSettings

PIPELINE = "crawler.pipelines.CatalogPipeline"
DOWNLOADER_MIDDLEWARES = {
    # first of all: nothing is sent (not even robots.txt) to a host outside the source's own
    "crawler.confinement.ConfinementMiddleware": 40,
    # robots.txt checked for concurrent requests too (crawler/robots.py: the upstream bug)
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawler.robots.RobotsTxtMiddleware": 100,
}
MONITORS = {
    "SPIDERMON_ENABLED": True,
    "EXTENSIONS": {"spidermon.contrib.scrapy.extensions.Spidermon": 500},
    "SPIDERMON_SPIDER_CLOSE_MONITORS": ["crawler.monitors.ParseHealth"],
}


def ingest_workers(crawl: CrawlSettings) -> int:
    return crawl.ingest_workers or max(1, min(8, os.cpu_count() or 1))


def scrapy_settings(
    *,
    crawl: CrawlSettings,
    data_dir: Path,
    database_url: str,
    limits: Limits,
    species_id: int | None = None,
    crawl_job_id: int | None = None,
    job_dir: Path | None = None,
    log_file: Path | None = None,
) -> dict[str, Any]:
    data_dir = data_dir.resolve()
    settings: dict[str, Any] = {
        "BOT_NAME": "shoal",
        "USER_AGENT": crawl.user_agent,
        "ROBOTSTXT_OBEY": crawl.obey_robots,
        "CONCURRENT_REQUESTS": crawl.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": crawl.concurrency_per_domain,
        "AUTOTHROTTLE_ENABLED": crawl.autothrottle,
        "AUTOTHROTTLE_START_DELAY": crawl.autothrottle_start_delay,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": crawl.autothrottle_target_concurrency,
        "DOWNLOAD_TIMEOUT": crawl.download_timeout,
        "DOWNLOAD_MAXSIZE": limits.max_bytes,
        "DOWNLOAD_WARNSIZE": max(1, limits.max_bytes // 2),
        "RETRY_ENABLED": crawl.retry_times > 0,
        "RETRY_TIMES": crawl.retry_times,
        "REDIRECT_MAX_TIMES": crawl.redirect_max_times,
        "MEDIA_ALLOW_REDIRECTS": True,  # image CDNs redirect; loops end as redirect_loop
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,
        "LOG_LEVEL": crawl.log_level,
        "ITEM_PIPELINES": {PIPELINE: 300},
        "DOWNLOADER_MIDDLEWARES": DOWNLOADER_MIDDLEWARES,
        # the confinement check and the download resolve a name once, through this cache: off,
        # a name could resolve to a public address for the check and a private one after
        "DNSCACHE_ENABLED": True,
        "SHOAL_ALLOW_PRIVATE_HOSTS": list(crawl.allow_private_hosts),
        "FILES_STORE": str(data_dir / "images"),
        "SHOAL_IMAGE_DIR": str(data_dir / "images"),
        "SHOAL_DATABASE_URL": database_url,
        "SHOAL_LIMITS": asdict(limits),
        "SHOAL_SPECIES_ID": species_id or 0,
        "SHOAL_CRAWL_JOB_ID": crawl_job_id or 0,
        "SHOAL_INGEST_WORKERS": ingest_workers(crawl),
        "HTTPCACHE_ENABLED": crawl.httpcache,
        "HTTPCACHE_DIR": str(data_dir / "http-cache"),  # pages only: images are not cached
        **MONITORS,
    }
    if job_dir is not None:
        settings["JOBDIR"] = str(job_dir)
    if log_file is not None:
        settings["LOG_FILE"] = str(log_file)
    return settings

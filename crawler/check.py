"""``shoal sources check``: one small query per source, parsed, nothing downloaded or stored.

Each source's spider runs its first search only (``max_starts=1``) for one species, by its
Latin name (the one name every source is searched with), up to a few images, with the
catalog pipeline replaced by one that only keeps a sample of the image URLs found. Its stats
go through the same summary and Spidermon parse-health monitors as a crawl, so a source reads
``ok``, ``warning`` (pages answered but yielded no image, or the parse dropped most results)
or ``failed`` (no page could be fetched). All sources run side by side in one child process
(``python -m crawler.check``; Twisted's reactor starts once).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from catalog.limits import limits_from_settings
from catalog.settings import get_settings
from crawler.scrapy_settings import scrapy_settings
from crawler.sources import spider_for
from crawler.stats import failure_of, summarise

SAMPLE = 3


class SamplePipeline:
    """Keeps the first image URLs found, in the stats; fetches and stores nothing."""

    def __init__(self, crawler: Any) -> None:
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Any) -> SamplePipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        sample = self.stats.get_value("shoal/sample") or []
        if len(sample) < SAMPLE:
            self.stats.set_value("shoal/sample", [*sample, *item.get("image_urls", [])][:SAMPLE])
        return item


def health(summary: dict[str, Any], error: str | None) -> str:
    if error:
        return "failed"
    return "warning" if summary["warnings"] else "ok"


def run_checks(species: dict[str, Any], sources: list[str], limit: int) -> list[dict[str, Any]]:
    """In this process: every source's first query, side by side; one report per source."""
    from scrapy.crawler import CrawlerProcess

    settings = get_settings()
    options = scrapy_settings(crawl=settings.crawl, data_dir=settings.data_dir,
                              database_url=settings.resolved_database_url,
                              limits=limits_from_settings(settings))
    options.update(ITEM_PIPELINES={"crawler.check.SamplePipeline": 300}, LOG_LEVEL="WARNING")
    process = CrawlerProcess(options)
    species = {**species, "keywords": {"la": [species["latin_name"]]}}
    crawlers = []
    for source in sources:
        spider_cls, kwargs = spider_for(source)
        crawler = process.create_crawler(spider_cls)
        process.crawl(crawler, species=species, limit=limit, max_starts=1, **kwargs)
        crawlers.append((source, crawler))
    process.start()
    out = []
    for source, crawler in crawlers:
        raw = crawler.stats.get_stats()
        summary = summarise(raw)
        error = failure_of(summary, raw.get("shoal/first_page_error"))
        out.append({"source": source, "health": health(summary, error), "error": error,
                    "warnings": summary["warnings"], "pages": summary["pages"],
                    "page_errors": summary["page_errors"],
                    "images_found": summary["images_found"], "skipped": summary["skipped"],
                    "sample": raw.get("shoal/sample") or [],
                    "seconds": summary["elapsed_seconds"]})
    return out


def check_sources(species: dict[str, Any], sources: list[str], limit: int = SAMPLE,
                  timeout: float = 300.0) -> list[dict[str, Any]]:
    """``run_checks`` in a child process (this one may have run Twisted already)."""
    from crawler.runner import _child_env

    log = get_settings().data_dir.resolve() / "crawl-logs" / f"check-{int(time.time())}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    request = json.dumps({"species": species, "sources": sources, "limit": limit})
    with open(log, "a", encoding="utf-8") as err:
        done = subprocess.run([sys.executable, "-m", "crawler.check"], input=request,
                              capture_output=False, stdout=subprocess.PIPE, stderr=err,
                              text=True, env=_child_env(), timeout=timeout, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the source check exited with code {done.returncode}; see {log}")
    return json.loads(lines[-1])


def main() -> int:
    request = json.loads(sys.stdin.read())
    reports = run_checks(request["species"], request["sources"], int(request["limit"]))
    sys.stdout.write(json.dumps(reports) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

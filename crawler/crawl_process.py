"""One crawl job in this process: ``python -m crawler.crawl_process CRAWL_JOB_ID``.

Twisted's reactor cannot be restarted, so every crawl gets a fresh process (``run_crawl``
starts this one). It marks the ``crawl_jobs`` row running, runs the spider with the catalog
pipeline, and writes the stats, the state and any error back. Progress goes to stdout as one
JSON object a line; Scrapy's log goes to the log file.
"""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from catalog.db import session_scope
from catalog.limits import limits_from_settings
from catalog.models import CrawlJob, JobState, utcnow
from catalog.settings import get_settings
from catalog.species import species_names
from crawler.scrapy_settings import scrapy_settings
from crawler.sources import spider_for
from crawler.stats import failure_of, summarise


def state_dir(data_dir: Path, crawl_job_id: int) -> Path:
    """JOBDIR: the scheduler queue and seen-requests of a crawl, so a rerun resumes it."""
    return data_dir.resolve() / "crawl-state" / str(crawl_job_id)


def log_path(data_dir: Path, crawl_job_id: int) -> Path:
    return data_dir.resolve() / "crawl-logs" / f"{crawl_job_id}.log"


def species_arguments(sp: Any) -> dict[str, Any]:
    """What a spider knows of its species (plain data: it crosses into the crawl process)."""
    return {"slug": sp.slug, "latin_name": sp.latin_name, "keywords": sp.keywords or {},
            "name_zh": sp.name_zh, "name_en": sp.name_en, "names": species_names(sp),
            "taxon_class": sp.taxon_class, "gbif_key": sp.gbif_key,
            "taxon_status": sp.taxon_status}


def _emit(result: dict[str, Any]) -> None:
    line = {"status": result["status"], "reason": result.get("reason"), "url": result.get("url")}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _start(crawl_job_id: int) -> tuple[dict[str, Any], str, int | None, int]:
    with session_scope() as session:
        job = session.get(CrawlJob, crawl_job_id)
        if job is None:
            raise LookupError(f"no crawl job {crawl_job_id}")
        sp = job.species
        species = species_arguments(sp)
        job.state, job.started_at, job.error, job.finished_at = (
            JobState.RUNNING, utcnow(), None, None)
        return species, job.source, job.limit, sp.id


def _finish(crawl_job_id: int, stats: dict[str, Any] | None, error: str | None,
            keyword: str | None = None, warning: str | None = None) -> None:
    with session_scope() as session:
        job = session.get(CrawlJob, crawl_job_id)
        assert job is not None
        if stats is not None:
            job.stats = stats
        if keyword:
            job.keyword = keyword[:255]
        job.state = JobState.FAILED if error else JobState.SUCCEEDED
        job.error = error
        job.warning = None if error else warning
        job.finished_at = utcnow()


def run_job(crawl_job_id: int) -> int:
    from scrapy.crawler import CrawlerProcess

    settings = get_settings()
    species, source, limit, species_id = _start(crawl_job_id)
    spider_cls, spider_kwargs = spider_for(source)
    job_dir = state_dir(settings.data_dir, crawl_job_id)
    log_file = log_path(settings.data_dir, crawl_job_id)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    options = scrapy_settings(
        crawl=settings.crawl, data_dir=settings.data_dir,
        database_url=settings.resolved_database_url, limits=limits_from_settings(settings),
        species_id=species_id, crawl_job_id=crawl_job_id, job_dir=job_dir, log_file=log_file,
    )
    options["SHOAL_ON_IMAGE"] = _emit
    options["LOG_INSTALL_ROOT_HANDLER"] = True
    process = CrawlerProcess(options)
    crawler = process.create_crawler(spider_cls)
    process.crawl(crawler, species=species, limit=limit, **spider_kwargs)
    process.start()
    raw = crawler.stats.get_stats()
    summary = summarise(raw)
    error = failure_of(summary, raw.get("shoal/first_page_error"))
    keyword = "; ".join(crawler.spider.keywords()) if crawler.spider else None
    _finish(crawl_job_id, summary, error, keyword, "; ".join(summary["warnings"]) or None)
    if error is None:
        shutil.rmtree(job_dir, ignore_errors=True)
    return 1 if error else 0


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    crawl_job_id = int(args[0])
    try:
        return run_job(crawl_job_id)
    except Exception as exc:  # record what went wrong on the row, then fail the process
        traceback.print_exc()
        _finish(crawl_job_id, None, f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

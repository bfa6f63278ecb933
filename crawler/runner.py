"""``run_crawl``: one crawl of one species from one source, recorded as a ``crawl_jobs`` row.

The crawl runs in a child process (``python -m crawler.crawl_process``), so it can be called any
number of times from one process or Celery worker (Twisted's reactor cannot restart, and a
daemonic worker process may not fork multiprocessing children).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import CrawlJob, JobState, utcnow
from catalog.settings import child_env, get_settings
from catalog.species import get_species
from crawler.crawl_process import log_path
from crawler.sources import UnknownSource, spider_for

__all__ = ["CrawlFailed", "UnknownSource", "run_crawl"]

Progress = Callable[[dict[str, Any]], None]


class CrawlFailed(RuntimeError):
    def __init__(self, message: str, crawl_job_id: int) -> None:
        super().__init__(message)
        self.crawl_job_id = crawl_job_id


def _crawl_job(species_slug: str, source: str, limit: int | None, job_id: int | None) -> CrawlJob:
    """The row for this crawl: a new one, or the unfinished one of the same queued job (resume)."""
    with session_scope() as session:
        species = get_species(session, species_slug)
        if job_id is not None:
            row = session.scalar(select(CrawlJob).where(
                CrawlJob.job_id == job_id, CrawlJob.species_id == species.id,
                CrawlJob.source == source).order_by(CrawlJob.id.desc()).limit(1))
            if row is not None:
                return row
        row = CrawlJob(species_id=species.id, source=source, limit=limit, job_id=job_id,
                       state=JobState.QUEUED)
        session.add(row)
        session.flush()
        return row


def _tail(path: Any, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


CRAWL_ENV_PREFIX = "SHOAL_CRAWL_"


def _child_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment, with this very ``crawler`` package first on the child's path and the
    crawl's own ``SHOAL_CRAWL_*`` overrides on top."""
    wrong = sorted(k for k in overrides or {} if not k.startswith(CRAWL_ENV_PREFIX))
    if wrong:
        raise ValueError(f"only {CRAWL_ENV_PREFIX}* settings can be set per crawl, not "
                         f"{', '.join(wrong)}")
    env = child_env(overrides)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _run_child(crawl_job_id: int, progress: Progress | None,
               env: dict[str, str] | None = None) -> int:
    log = log_path(get_settings().data_dir, crawl_job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "crawler.crawl_process", str(crawl_job_id)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=_child_env(env),
        )
        try:
            assert child.stdout is not None
            for line in child.stdout:
                if progress is not None and line.startswith("{"):
                    progress(json.loads(line))
            return child.wait()
        except BaseException:  # Ctrl-C or a worker shutdown: let Scrapy stop cleanly
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise


def _check(crawl_job_id: int, rc: int) -> None:
    with session_scope() as session:
        row = session.get(CrawlJob, crawl_job_id)
        assert row is not None
        if rc == 0 and row.state == JobState.SUCCEEDED:
            return
        if row.state != JobState.FAILED or not row.error:
            tail = _tail(log_path(get_settings().data_dir, crawl_job_id))
            row.error = f"crawl process exited with code {rc}" + (f": {tail}" if tail else "")
            row.state = JobState.FAILED
            row.finished_at = utcnow()
        message = row.error
    raise CrawlFailed(f"crawl job {crawl_job_id} failed: {message}", crawl_job_id)


def run_crawl(
    species_slug: str,
    source: str,
    *,
    limit: int | None = None,
    job_id: int | None = None,
    progress: Progress | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Crawl ``source`` for one species; returns the ``crawl_jobs.id``.

    ``job_id`` ties the crawl to a queued ``jobs`` row: a redelivered task finds its crawl job
    again and resumes it (Scrapy's JOBDIR) instead of starting a second one, and a finished one
    is not crawled twice. ``progress`` is called with each image result. ``env``: ``SHOAL_CRAWL_*``
    settings for this crawl alone (the demo points every spider at its local site so, wherever
    the job runs). Raises
    ``UnknownSource``, ``catalog.species.UnknownSpecies`` or ``CrawlFailed`` (the error is
    recorded on the crawl job first).
    """
    spider_for(source)  # an unknown source fails before any row is written
    row = _crawl_job(species_slug, source, limit, job_id)
    if row.state == JobState.SUCCEEDED:
        return row.id
    try:
        rc = _run_child(row.id, progress, env)
    except KeyboardInterrupt:
        _check(row.id, -signal.SIGINT)
        raise
    _check(row.id, rc)
    return row.id

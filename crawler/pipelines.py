"""The item pipeline: Scrapy's media-pipeline machinery fetches, the catalog's path ingests.

``CatalogPipeline`` is a ``FilesPipeline`` whose "store" is the catalog: Scrapy schedules,
throttles, retries, caps and de-duplicates the downloads (robots.txt, redirects and timeouts
included) and hands each body to the catalog's ingest path, which validates, normalises,
hashes, stores and records it. That whole step runs in worker processes, each with its own
catalog connection (``crawler.ingest_workers``), fed in batches that form while they are busy
(``crawler.batching``), so downloads keep flowing (the reactor is never starved of the GIL)
while images decode, and a body crosses the pipe once. The crawl's own process only looks up
known URLs (inline on SQLite, whose reads cost less than a thread hop; in a thread on a
server) and records URL failures and repeat sightings, in threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.http import Request, Response
from scrapy.http.request import NO_CALLBACK
from scrapy.pipelines.files import FilesPipeline
from scrapy.pipelines.media import FileInfoOrError, MediaPipeline
from sqlalchemy import Connection, Row, bindparam, select
from twisted.python.failure import Failure

from catalog.db import get_engine, session_factory
from catalog.imaging import LIMIT_REASONS, Limits, Reject
from catalog.ingest import IngestResult, SourceInfo, record_source
from catalog.models import Image, ImageSource, ImageStatus
from crawler.batching import Batcher
from crawler.failures import RECEIVED, UrlFailure, classify, count_received
from crawler.ingest_workers import WorkerConfig, ingest_many, init_worker, worker_ready

logger = logging.getLogger(__name__)


class UrlError(Exception):
    """A URL that gave no body to ingest; carries the reason recorded on ``image_sources``."""

    def __init__(self, failure: UrlFailure) -> None:
        super().__init__(f"{failure.reason}: {failure.detail}")
        self.failure = failure


class _QuietUrlErrors(logging.Filter):
    """A URL that fails is an expected, recorded outcome: no ERROR with a traceback for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], UrlError))


logging.getLogger("scrapy.pipelines.media").addFilter(_QuietUrlErrors())

KNOWN_URL = (
    select(Image.id, Image.sha256, Image.path, Image.status, Image.reject_reason)
    .join(ImageSource, ImageSource.image_id == Image.id)
    .where(ImageSource.url == bindparam("url"))
)


def source_info(item: Any, url: str, crawl_job_id: int | None) -> SourceInfo:
    return SourceInfo(
        url=url, page_url=item.get("page_url"), link_url=item.get("link_url"),
        site=item.get("site"),
        license=item.get("license"), license_url=item.get("license_url"),
        artist=item.get("artist"), title=item.get("title"), keyword=item.get("keyword"),
        crawl_job_id=crawl_job_id,
    )


def _worker_context() -> Any:
    """Workers fork from a clean server process that has imported the ingest path once:
    cheaper to start than ``spawn`` (which re-imports the crawl's whole main module in each),
    and safe where ``fork`` is not (this process runs threads and an event loop)."""
    context = get_context("forkserver")
    context.set_forkserver_preload(["crawler.ingest_workers"])
    return context


class CatalogPipeline(FilesPipeline):
    """Settings: ``SHOAL_DATABASE_URL``, ``SHOAL_IMAGE_DIR``, ``SHOAL_SPECIES_ID``,
    ``SHOAL_CRAWL_JOB_ID``, ``SHOAL_LIMITS`` (dict of ``Limits``), ``SHOAL_INGEST_WORKERS`` and
    optionally ``SHOAL_ON_IMAGE`` (called with each result, for progress)."""

    FILES_URLS_FIELD = "image_urls"
    FILES_RESULT_FIELD = "images"
    LOG_FAILED_RESULTS = False

    def __init__(self, store_uri: str, *, crawler: Any) -> None:
        super().__init__(store_uri, crawler=crawler)
        s = crawler.settings
        self.crawl_job_id: int | None = s.getint("SHOAL_CRAWL_JOB_ID") or None
        self.species_id: int | None = s.getint("SHOAL_SPECIES_ID") or None
        self.database_url: str = s["SHOAL_DATABASE_URL"]
        self.max_bytes: int = s.getint("DOWNLOAD_MAXSIZE")
        crawler.signals.connect(count_received, signal=signals.bytes_received)
        self.sessions = session_factory(self.database_url)
        self.db_lock = threading.Lock()
        self.lookup_lock = threading.Lock()
        self.lookup_conn: Connection | None = None
        self.inline_lookups = self.database_url.startswith("sqlite")
        self.executor = ThreadPoolExecutor(4, thread_name_prefix="shoal-catalog")
        self.worker_count = max(1, s.getint("SHOAL_INGEST_WORKERS", 2))
        self.workers = ProcessPoolExecutor(
            self.worker_count, mp_context=_worker_context(),
            initializer=init_worker, initargs=(WorkerConfig(
                database_url=self.database_url, image_dir=str(Path(s["SHOAL_IMAGE_DIR"])),
                limits=Limits(**s.getdict("SHOAL_LIMITS")), species_id=self.species_id),))
        self.batcher: Batcher[tuple[bytes, SourceInfo], IngestResult] = Batcher(
            self.workers, ingest_many, depth=2 * self.worker_count)
        self.on_image: Callable[[dict[str, Any]], None] | None = s.get("SHOAL_ON_IMAGE")

    def open_spider(self, spider: Any = None) -> None:
        super().open_spider(spider)
        # start the forkserver and every worker now, before the first download: a pool starts
        # them on demand, which blocked the reactor for the forkserver's imports at the first
        # body and left the early bodies queued behind the workers' start
        wait([self.workers.submit(worker_ready) for _ in range(self.worker_count)])

    def close_spider(self, spider: Any = None) -> None:
        self.crawler.stats.set_value("shoal/ingest_batches", self.batcher.batches)
        self.executor.shutdown(wait=True)
        self.workers.shutdown(wait=True)
        if self.lookup_conn is not None:
            self.lookup_conn.close()

    # --- threads and the catalog ----------------------------------------------------------
    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    @contextmanager
    def _catalog(self) -> Any:
        with self.db_lock, self.sessions() as session:
            yield session
            session.commit()

    def _lookup_url(self, url: str) -> Row[Any] | None:
        """The image an earlier crawl found at this URL: one indexed read on a connection of
        its own (a Core statement, compiled once; an ORM session per lookup cost 13x more)."""
        with self.lookup_lock:
            if self.lookup_conn is None:
                self.lookup_conn = get_engine(self.database_url).connect()
            try:
                return self.lookup_conn.execute(KNOWN_URL, {"url": url}).first()
            finally:
                self.lookup_conn.rollback()  # no read transaction left open between lookups

    def _record_sighting(self, source: SourceInfo, image_id: int) -> None:
        with self._catalog() as session:
            record_source(session, source, image_id, self.species_id)

    def _record_failure(self, source: SourceInfo, failure: UrlFailure) -> None:
        with self._catalog() as session:
            record_source(session, source, None, self.species_id, error=failure.reason,
                          error_detail=failure.detail, http_status=failure.http_status)

    # --- the media pipeline interface -----------------------------------------------------
    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        headers = {"Referer": item["page_url"]} if item.get("page_url") else None
        return [Request(url, callback=NO_CALLBACK, headers=headers, meta={"dont_cache": True})
                for url in item.get(self.files_urls_field) or []]

    async def media_to_download(self, request: Request, info: MediaPipeline.SpiderInfo, *,
                                item: Any = None) -> dict[str, Any] | None:
        """The result of an earlier crawl of this URL (not fetched again), or None to fetch."""
        if self.inline_lookups:  # a local file: the read is cheaper than a hop to a thread
            row = self._lookup_url(request.url)
        else:  # a server: a round trip must not hold up the reactor
            row = await self._in_thread(self._lookup_url, request.url)
        if row is None or (row.status == ImageStatus.INVALID
                           and row.reject_reason in LIMIT_REASONS):
            return None  # new, or refused under limits that may have changed since: fetch
        await self._in_thread(self._record_sighting,
                              source_info(item, request.url, self.crawl_job_id), row.id)
        rejected = row.status == ImageStatus.INVALID
        return {"url": request.url, "path": row.path or "", "checksum": row.sha256,
                "status": "known_rejected" if rejected else "known", "image_id": row.id,
                "reason": row.reject_reason}

    async def media_downloaded(self, response: Response, request: Request,
                               info: MediaPipeline.SpiderInfo, *, item: Any = None) -> Any:
        if response.status != 200:
            return {"url": request.url, "status": "failed", "reason": Reject.HTTP_ERROR,
                    "detail": f"HTTP {response.status}", "http_status": response.status}
        self.crawler.stats.inc_value("shoal/bytes", len(response.body))
        source = source_info(item, request.url, self.crawl_job_id)
        result = await self.batcher.submit((response.body, source))
        return {"url": request.url, "path": "", "checksum": None, "status": result.outcome,
                "image_id": result.image_id, "reason": result.reason}

    def media_failed(self, failure: Failure, request: Request,
                     info: MediaPipeline.SpiderInfo) -> Any:
        assert failure.value is not None
        raise UrlError(classify(failure, request.meta.get(RECEIVED), self.max_bytes)
                       ) from failure.value

    def item_completed(self, results: list[FileInfoOrError], item: Any,
                       info: MediaPipeline.SpiderInfo) -> Any:
        out: list[dict[str, Any]] = []
        for ok, value in results:
            if ok:
                out.append(dict(value))
                continue
            exc = value.value
            why = exc.failure if isinstance(exc, UrlError) else classify(value)
            out.append({"url": None, "status": "failed", "reason": why.reason,
                        "detail": why.detail, "http_status": why.http_status})
        item[self.files_result_field] = out
        return item

    async def process_item(self, item: Any) -> Any:
        item = await super().process_item(item)
        urls = item.get(self.files_urls_field) or []
        for url, result in zip(urls, item[self.files_result_field], strict=True):
            if result["status"] == "failed":
                result["url"] = url
                logger.info("not fetched: %s (%s: %s)", url, result["reason"], result["detail"])
                failure = UrlFailure(result["reason"], result["detail"], result["http_status"])
                await self._in_thread(self._record_failure,
                                      source_info(item, url, self.crawl_job_id), failure)
            self._count(result)
        return item

    def _count(self, result: dict[str, Any]) -> None:
        stats = self.crawler.stats
        status = result["status"]
        key = {"new": "stored", "existing": "duplicates", "known": "existing"}.get(status)
        if key:
            stats.inc_value(f"shoal/{key}")
        else:  # rejected content, an earlier rejection, or a URL that failed
            stats.inc_value(f"shoal/rejected/{result['reason'] or 'unknown'}")
        if self.on_image:
            self.on_image(result)

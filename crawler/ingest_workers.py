"""The CPU-heavy half of a crawl, run in worker processes: normalise, store and catalog a body.

Each worker has its own catalog connection, so the crawl's own process only downloads (its
reactor keeps the GIL to itself) and image bodies go one way through the pipe: only a small
``IngestResult`` comes back. Concurrent writers are safe by the catalog's own rules
(``ON CONFLICT DO NOTHING`` on the unique keys, then a read of the winner).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from catalog.db import get_engine
from catalog.imaging import ImageRejected, Limits, NormalisedImage, normalise
from catalog.ingest import IngestResult, SourceInfo, ingest_known, ingest_normalised
from catalog.store import ImageStore
from crawler.batching import ItemFailed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    database_url: str
    image_dir: str
    limits: Limits
    species_id: int | None


@dataclass
class _Worker:
    config: WorkerConfig
    connection: Connection  # one per worker for its lifetime: a Core connection, no ORM
    store: ImageStore


_worker: _Worker | None = None


def init_worker(config: WorkerConfig) -> None:
    """``ProcessPoolExecutor`` initializer: one connection and store per worker process."""
    global _worker
    _worker = _Worker(config, get_engine(config.database_url).connect(),
                      ImageStore(Path(config.image_dir)))


def worker_ready() -> int:
    """A no-op task that makes the pool start a worker (its pid, for the curious)."""
    assert _worker is not None, "init_worker was not called in this process"
    return os.getpid()


def ingest_downloaded(raw: bytes, source: SourceInfo) -> IngestResult:
    """Catalog one downloaded body; the decode and re-encode happen outside any transaction."""
    assert _worker is not None, "init_worker was not called in this process"
    cfg, conn = _worker.config, _worker.connection
    with conn.begin():
        known = ingest_known(conn, hashlib.sha256(raw).hexdigest(), source, cfg.species_id)
    if known is not None:
        return known
    outcome: NormalisedImage | ImageRejected
    try:
        outcome = normalise(raw, cfg.limits)
    except ImageRejected as rej:
        outcome = rej
    with conn.begin():
        return ingest_normalised(conn, _worker.store, raw, outcome,
                                 species_id=cfg.species_id, source=source)


def ingest_many(bodies: list[tuple[bytes, SourceInfo]]) -> list[IngestResult | ItemFailed]:
    """``ingest_downloaded`` for a batch; an image that raises fails alone, not its batch."""
    out: list[IngestResult | ItemFailed] = []
    for raw, source in bodies:
        try:
            out.append(ingest_downloaded(raw, source))
        except Exception as exc:  # reported on that image's URL by the crawl's process
            log.warning("ingest of %s failed", source.url, exc_info=True)
            out.append(ItemFailed(f"{type(exc).__name__}: {exc}"))
    return out

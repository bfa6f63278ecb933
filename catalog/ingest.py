"""Write one image (and where it was found) into the catalog, idempotently.

The same bytes never make a second image row, the same URL never makes a second source row,
and concurrent writers (crawler processes, workers) race safely: inserts are
``ON CONFLICT DO NOTHING`` on the unique keys, followed by a read of the winner.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Table, TextClause, bindparam, select, text, update
from sqlalchemy.orm import Session

from catalog.imaging import LIMIT_REASONS, ImageRejected, Limits, NormalisedImage, normalise
from catalog.models import Image, ImageSource, ImageStatus, utcnow
from catalog.store import ImageStore

# What the writes run on: an ORM session, or (in crawl workers, where the ORM's per-statement
# overhead was a third of the catalog cost) a Core connection; both execute these statements.
Catalog = Session | Connection


@dataclass
class SourceInfo:
    """Where an image was found. ``url`` is unique: a file path for local imports."""

    url: str
    page_url: str | None = None
    link_url: str | None = None  # the page link as found, when page_url was unwrapped from it
    site: str | None = None
    license: str | None = None
    license_url: str | None = None
    artist: str | None = None
    title: str | None = None
    keyword: str | None = None
    crawl_job_id: int | None = None


@dataclass
class IngestResult:
    outcome: str  # "new" | "existing" | "rejected"
    image_id: int | None
    reason: str | None = None
    detail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def insert_ignore(
    session: Catalog, model: type, values: dict[str, Any], keys: list[str]
) -> int | None:
    """INSERT ... ON CONFLICT (keys) DO NOTHING on SQLite and PostgreSQL.

    The new row's primary key when a row went in, None when one with the same keys existed.
    """
    table: Table = model.__table__  # type: ignore[attr-defined]
    stmt = _insert_ignore_statement(table, tuple(values), tuple(keys))
    return session.execute(stmt, values).scalar()


@lru_cache(maxsize=32)
def _insert_ignore_statement(table: Table, columns: tuple[str, ...],
                             keys: tuple[str, ...]) -> TextClause:
    """The statement as typed text, which SQLAlchemy compiles once and caches: the dialects'
    ``insert().on_conflict_do_nothing()`` constructs are not cacheable, and compiling one
    cost more than running it, twice per crawled image. Both SQLite (3.35+) and PostgreSQL
    take this exact syntax; RETURNING says whether a row went in (psycopg's rowcount is -1)."""
    (pk,) = table.primary_key.columns
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
           f"VALUES ({', '.join(':' + c for c in columns)}) "
           f"ON CONFLICT ({', '.join(keys)}) DO NOTHING RETURNING {pk.name}")
    typed = [bindparam(c, type_=table.c[c].type) for c in columns]
    return text(sql).bindparams(*typed).columns(pk)


def _image_values(norm: NormalisedImage, path: str, species_id: int | None) -> dict[str, Any]:
    now = utcnow()
    return {
        "sha256": norm.sha256,
        "raw_sha256": norm.raw_sha256,
        "pixel_sha256": norm.pixel_sha256,
        "phash": norm.phash,
        "dhash": norm.dhash,
        "width": norm.width,
        "height": norm.height,
        "source_width": norm.source_width,
        "source_height": norm.source_height,
        "format": norm.source_format,
        "byte_size": len(norm.data),
        "path": path,
        "status": ImageStatus.DOWNLOADED,
        "expected_species_id": species_id,
        "created_at": now,
        "updated_at": now,
    }


def _rejected_values(raw: bytes, rej: ImageRejected, species_id: int | None) -> dict[str, Any]:
    digest = hashlib.sha256(raw).hexdigest()
    now = utcnow()
    return {
        "sha256": digest,
        "raw_sha256": digest,
        "byte_size": len(raw),
        "status": ImageStatus.INVALID,
        "reject_reason": rej.reason,
        "reject_detail": rej.detail[:2000],
        "expected_species_id": species_id,
        "created_at": now,
        "updated_at": now,
    }


def ingest_known(session: Catalog, raw_sha256: str, source: SourceInfo | None,
                 species_id: int | None) -> IngestResult | None:
    """The result for bytes catalogued before (found again, maybe under another URL), recording
    this sighting; None for bytes never seen, or refused only by a limit (``LIMIT_REASONS``),
    which are judged again under today's limits."""
    known = session.execute(
        select(Image.id, Image.status, Image.reject_reason, Image.reject_detail)
        .where(Image.raw_sha256 == raw_sha256)
        .order_by(Image.status == ImageStatus.INVALID, Image.id).limit(1)  # a stored one first
    ).first()
    if known is None:
        return None
    if known.status == ImageStatus.INVALID and known.reject_reason in LIMIT_REASONS:
        return None
    if source is not None:
        record_source(session, source, known.id, species_id)
    if known.status == ImageStatus.INVALID:
        return IngestResult("rejected", known.id, known.reject_reason, known.reject_detail)
    return IngestResult("existing", known.id)


def record_source(
    session: Catalog,
    source: SourceInfo,
    image_id: int | None,
    species_id: int | None,
    *,
    error: str | None = None,
    error_detail: str | None = None,
    http_status: int | None = None,
) -> None:
    """Upsert the place an image was found; a later sighting refreshes ``last_seen``."""
    now = utcnow()
    values = {
        "url": source.url,
        "image_id": image_id,
        "page_url": source.page_url,
        "link_url": source.link_url,
        "site": source.site,
        "license": source.license,
        "license_url": source.license_url,
        "artist": source.artist,
        "title": source.title,
        "keyword": source.keyword,
        "species_id": species_id,
        "crawl_job_id": source.crawl_job_id,
        "error": error,
        "error_detail": (error_detail or None) and error_detail[:2000],
        "http_status": http_status,
        "first_seen": now,
        "last_seen": now,
    }
    if insert_ignore(session, ImageSource, values, ["url"]):
        return
    refresh: dict[str, Any] = {"last_seen": now}
    if image_id is not None:
        refresh.update(image_id=image_id, error=None, error_detail=None)
    elif error is not None:
        refresh.update(error=error, error_detail=values["error_detail"], http_status=http_status)
    session.execute(update(ImageSource).where(ImageSource.url == source.url).values(**refresh))


def ingest_bytes(
    session: Session,
    store: ImageStore,
    raw: bytes,
    *,
    species_id: int | None,
    source: SourceInfo | None = None,
    limits: Limits | None = None,
) -> IngestResult:
    """Validate, normalise, store and catalog ``raw``. Never raises for bad image content."""
    known = ingest_known(session, hashlib.sha256(raw).hexdigest(), source, species_id)
    if known is not None:
        return known
    try:
        outcome: NormalisedImage | ImageRejected = normalise(raw, limits)
    except ImageRejected as rej:
        outcome = rej
    return ingest_normalised(session, store, raw, outcome, species_id=species_id, source=source)


def ingest_normalised(
    session: Catalog,
    store: ImageStore,
    raw: bytes,
    outcome: NormalisedImage | ImageRejected,
    *,
    species_id: int | None,
    source: SourceInfo | None = None,
) -> IngestResult:
    """Store and catalog bytes already known to be new, given ``normalise(raw)``'s outcome
    (computed outside the transaction by a caller that checked ``ingest_known`` first)."""
    if isinstance(outcome, ImageRejected):
        values = _rejected_values(raw, outcome, species_id)
        image_id = insert_ignore(session, Image, values, ["sha256"])
        if image_id is None:  # refused before (for a limit): the reason is today's
            image_id = session.execute(
                update(Image).where(Image.sha256 == values["sha256"],
                                    Image.status == ImageStatus.INVALID)
                .values(reject_reason=values["reject_reason"],
                        reject_detail=values["reject_detail"], updated_at=values["updated_at"])
                .returning(Image.id)).scalar() or session.scalar(
                select(Image.id).where(Image.sha256 == values["sha256"]))
        if source is not None:
            record_source(session, source, image_id, species_id)
        return IngestResult("rejected", image_id, outcome.reason, outcome.detail)

    path = store.put(outcome.data, outcome.sha256)  # idempotent: same bytes, same file
    inserted = insert_ignore(session, Image, _image_values(outcome, path, species_id), ["sha256"])
    image_id = inserted or session.scalar(select(Image.id).where(Image.sha256 == outcome.sha256))
    if source is not None:
        record_source(session, source, image_id, species_id)
    return IngestResult("new" if inserted else "existing", image_id)


def touch(session: Session, image_id: int, when: datetime | None = None) -> None:
    session.execute(update(Image).where(Image.id == image_id).values(updated_at=when or utcnow()))

"""Per-species crawl schedules, and the claim that turns a due schedule into queued jobs.

Claiming is a compare-and-set on ``next_run_at`` in the same transaction that inserts the
jobs, so however many processes claim at once (two beats, a beat and `shoal schedule tick`),
each due run becomes exactly one crawl chain.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog.db import session_scope
from catalog.leases import as_utc
from catalog.models import CrawlSchedule, Job, Species, utcnow
from catalog.species import get_species
from pipeline.errors import UsageError
from pipeline.jobs.flow import crawl_chain
from pipeline.jobs.submit import add_rows, dispatch

log = logging.getLogger(__name__)

UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
EVERY_RE = re.compile(r"^(?:\d+[wdhms])+$")
DEFAULT_SOURCE = "wikimedia"


def parse_every(text: str) -> int:
    """``7d``, ``12h``, ``1d12h``, ``90m`` -> seconds."""
    value = text.strip().lower()
    if not EVERY_RE.match(value):
        raise UsageError(f"cannot read the interval {text!r}: use e.g. 7d, 12h, 1d12h, 90m")
    seconds = sum(int(n) * UNITS[u] for n, u in re.findall(r"(\d+)([wdhms])", value))
    if seconds < 1:
        raise UsageError("the interval must be at least one second")
    return seconds


def format_every(seconds: int) -> str:
    parts = []
    for unit, size in UNITS.items():
        if unit == "w":  # "7d" reads better than "1w"
            continue
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


def set_schedule(
    session: Session, species: str, sources: list[str], every_seconds: int,
    limit: int | None = None,
) -> list[CrawlSchedule]:
    """Create or change the schedule of each (species, source). A new one is due at once;
    a changed interval counts from the last run."""
    sp = get_species(session, species)
    rows = []
    for source in sources or [DEFAULT_SOURCE]:
        row = session.scalar(select(CrawlSchedule).where(
            CrawlSchedule.species_id == sp.id, CrawlSchedule.source == source))
        if row is None:
            row = CrawlSchedule(species_id=sp.id, source=source, next_run_at=utcnow())
            session.add(row)
        elif row.last_run_at is not None and row.every_seconds != every_seconds:
            row.next_run_at = as_utc(row.last_run_at) + timedelta(seconds=every_seconds)
        row.every_seconds = every_seconds
        row.limit = limit
        row.enabled = True
        rows.append(row)
    session.flush()
    return rows


def remove_schedules(session: Session, species: str, sources: list[str] | None = None) -> int:
    sp = get_species(session, species)
    query = delete(CrawlSchedule).where(CrawlSchedule.species_id == sp.id)
    if sources:
        query = query.where(CrawlSchedule.source.in_(sources))
    removed = session.execute(query).rowcount
    if not removed:
        raise UsageError(f"no schedule for {species}" + (f" from {', '.join(sources)}"
                                                         if sources else ""))
    return removed


def list_schedules(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        select(CrawlSchedule, Species.slug).join(Species).order_by(Species.slug,
                                                                   CrawlSchedule.source)
    ).all()
    return [
        {
            "id": s.id, "species": slug, "source": s.source,
            "every": format_every(s.every_seconds), "every_seconds": s.every_seconds,
            "limit": s.limit, "enabled": s.enabled,
            "next_run_at": as_utc(s.next_run_at).isoformat(timespec="seconds"),
            "last_run_at": as_utc(s.last_run_at).isoformat(timespec="seconds")
            if s.last_run_at else None,
            "last_job_id": s.last_job_id,
        }
        for s, slug in rows
    ]


def next_after(previous: datetime, every_seconds: int, now: datetime) -> datetime:
    """The first run time after ``now`` on the schedule's grid (missed runs are skipped)."""
    behind = max(0.0, (now - previous).total_seconds())
    return previous + timedelta(seconds=every_seconds * (int(behind // every_seconds) + 1))


def claim_due(session: Session, now: datetime | None = None) -> list[list[Job]]:
    """Claim every due schedule, one transaction each; returns the committed job chains."""
    now = now or utcnow()
    due = session.execute(
        select(CrawlSchedule.id, CrawlSchedule.next_run_at, CrawlSchedule.every_seconds,
               CrawlSchedule.source, CrawlSchedule.limit, Species.slug)
        .join(Species)
        .where(CrawlSchedule.enabled.is_(True), CrawlSchedule.next_run_at <= now)
        .order_by(CrawlSchedule.next_run_at)
    ).all()
    session.rollback()  # end the read: each claim below starts from fresh data
    claimed: list[list[Job]] = []
    for sid, run_at, every, source, limit, slug in due:
        won = session.execute(
            update(CrawlSchedule)
            .where(CrawlSchedule.id == sid, CrawlSchedule.next_run_at == run_at)
            .values(next_run_at=next_after(as_utc(run_at), every, now), last_run_at=now)
        ).rowcount
        if not won:  # another process claimed this run first
            session.rollback()
            continue
        key = f"schedule:{sid}:{as_utc(run_at).isoformat()}"
        jobs = add_rows(session, crawl_chain(slug, source, limit), key)
        session.execute(
            update(CrawlSchedule).where(CrawlSchedule.id == sid).values(last_job_id=jobs[0].id)
        )
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        for job in jobs:  # keep them loaded through the rollbacks of later, lost claims
            session.expunge(job)
        claimed.append(jobs)
    return claimed


def enqueue_due(now: datetime | None = None) -> list[Job]:
    """Claim what is due and send it (or, with no broker, run it here); the first job of
    each chain is returned."""
    with session_scope() as session:
        chains = claim_due(session, now)
    for jobs in chains:
        log.info("schedule: queued crawl job %s (%s)", jobs[0].id, jobs[0].args)
        dispatch(jobs)
    return [jobs[0] for jobs in chains]

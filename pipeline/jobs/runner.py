"""How one job runs: the state transitions of its ``jobs`` row around a task body.

queued -> running -> succeeded | failed | cancelled, and running -> queued for a retry. A
delivery of a job that already finished is a no-op, so a message redelivered after its worker
was killed never runs finished work twice; a job that was running when its worker died is
taken over once its heartbeat lease lapses. Task bodies themselves must be idempotent (they
find what an earlier attempt of the same job already wrote, by ``job_id``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from uuid import uuid4

from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from catalog import leases
from catalog.db import get_engine, session_scope
from catalog.models import Job, JobState, utcnow
from catalog.settings import get_settings
from pipeline.jobs.transient import retrying

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0
ACTIVE = (JobState.QUEUED, JobState.RUNNING)


class JobCancelled(Exception):
    """Raised inside a task body at its next progress report once the job was cancelled."""


class RetryJob(Exception):
    """The job went back to ``queued``; the caller should deliver it again after ``countdown``."""

    def __init__(self, countdown: float, cause: BaseException | None = None) -> None:
        super().__init__(f"retry in {countdown:.0f}s")
        self.countdown = countdown
        self.cause = cause


def lease_name(job_id: int) -> str:
    return f"job:{job_id}"


@lru_cache(maxsize=8)
def _bookkeeping_engine(url: str, busy_ms: int) -> Engine:
    if not url.startswith("sqlite"):
        return get_engine(url)
    engine = create_engine(url, connect_args={"timeout": busy_ms / 1000})

    def impatient(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()

    event.listen(engine, "connect", impatient)
    return engine


@contextmanager
def bookkeeping_session(busy_ms: int = 250) -> Iterator[Session]:
    """For progress and heartbeats, which must never wait behind the body's own transaction.

    SQLite has one writer: while a body holds a write transaction these writes give up after
    ``busy_ms`` (raising OperationalError) instead of blocking the body for the busy timeout.
    """
    url = get_settings().resolved_database_url
    with Session(_bookkeeping_engine(url, busy_ms)) as session:
        yield session
        session.commit()


@dataclass
class JobContext:
    """What a task body sees: its arguments, its parent's result, and a progress callback."""

    job_id: int
    kind: str
    args: dict[str, Any]
    attempt: int
    parent_result: dict[str, Any] | None
    cancelled: threading.Event = field(default_factory=threading.Event)
    _last_report: float = 0.0

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress (at most once a second) and stop the body if the job was cancelled."""
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_report < PROGRESS_EVERY_S:
            self.check_cancelled()
            return
        self._last_report = now
        try:
            # no wait at all: on SQLite the writer in the way is usually this job's own body
            # (progress is reported from inside its transaction), which a wait cannot outlast
            with bookkeeping_session(busy_ms=0) as session:
                running = session.execute(
                    update(Job)
                    .where(Job.id == self.job_id, Job.state == JobState.RUNNING)
                    .values(progress=max(0.0, min(1.0, fraction)), message=message)
                ).rowcount
        except OperationalError:  # SQLite busy: the progress waits for the next report, but a
            # cancellation is still seen now (a read never waits for a writer in WAL mode)
            with bookkeeping_session(busy_ms=0) as session:
                state = session.scalar(select(Job.state).where(Job.id == self.job_id))
            running = state == JobState.RUNNING
        if not running:
            self.cancelled.set()
        self.check_cancelled()

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def notify(self, stage: str, done: int, total: int) -> None:
        """Tell whoever runs this job in-process (a CLI's progress bars) of a step of its body;
        a worker has no listener and the catalog row's progress is what it reports."""
        listener = LISTENER.get()
        if listener is not None:
            listener(self, stage, done, total)


Body = Callable[[JobContext], dict[str, Any]]
# (job, stage, done, total): the in-process caller's view of a body's steps, e.g. rich bars
Listener = Callable[[JobContext, str, int, int], None]
LISTENER: ContextVar[Listener | None] = ContextVar("shoal_job_listener", default=None)


@contextmanager
def listening(listener: Listener | None) -> Iterator[None]:
    """Bodies run in this process (the embedded default) report their steps to ``listener``."""
    token = LISTENER.set(listener)
    try:
        yield
    finally:
        LISTENER.reset(token)


class Heartbeat(threading.Thread):
    """Renews the job's lease while its body runs, and notices a cancellation."""

    def __init__(self, ctx: JobContext, holder: str, seconds: int) -> None:
        super().__init__(name=f"heartbeat-job-{ctx.job_id}", daemon=True)
        self.ctx, self.holder, self.seconds = ctx, holder, seconds
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.seconds / 3):
            try:
                with bookkeeping_session() as session:
                    held = leases.acquire(session, lease_name(self.ctx.job_id), self.holder,
                                          self.seconds)
                    state = session.scalar(select(Job.state).where(Job.id == self.ctx.job_id))
                if not held:  # another worker took the job over: stop rather than run it twice
                    log.warning("job %s: lease lost to another worker; stopping", self.ctx.job_id)
                if not held or state == JobState.CANCELLED:
                    self.ctx.cancelled.set()
            except Exception:  # the next beat tries again; the lease outlives two misses
                log.warning("job %s: heartbeat failed", self.ctx.job_id, exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def execute(
    job_id: int,
    bodies: Mapping[str, Body],
    *,
    host: str,
    retry_in: Callable[[BaseException, int], float | None] = lambda _exc, _attempt: None,
) -> dict[str, Any] | None:
    """Run one delivery of a job; returns its result (None when there was nothing to do).

    ``retry_in(exc, attempt)`` says after how many seconds a failed attempt is tried again,
    or None to record the failure (then the exception propagates, so a chain stops).
    """
    holder = f"{host}:{os.getpid()}:{uuid4().hex[:8]}"
    lease_s = get_settings().jobs.job_lease_seconds
    ctx = retrying(f"job {job_id}: start", lambda: _started(job_id, host, holder, lease_s))
    if ctx is None:
        return None
    heartbeat = Heartbeat(ctx, holder, lease_s)
    heartbeat.start()
    try:
        result = bodies[ctx.kind](ctx)
    except JobCancelled:
        _end(job_id, holder, expect=JobState.CANCELLED, message="cancelled while running")
        return None
    except Exception as exc:
        delay = retry_in(exc, ctx.attempt)
        if delay is None:
            _end(job_id, holder, state=JobState.FAILED, error=describe(exc))
            raise
        _end(job_id, holder, state=JobState.QUEUED, error=describe(exc),
             message=f"attempt {ctx.attempt} hit a transient error; retrying in {delay:.0f}s")
        raise RetryJob(delay, exc) from exc
    finally:
        heartbeat.stop()
    _end(job_id, holder, state=JobState.SUCCEEDED, result=result)
    return result


def _started(job_id: int, host: str, holder: str, lease_s: int) -> JobContext | None:
    with session_scope() as session:
        return _start(session, job_id, host, holder, lease_s)


def _start(
    session: Session, job_id: int, host: str, holder: str, lease_s: int
) -> JobContext | None:
    job = session.get(Job, job_id)
    if job is None:
        raise LookupError(f"no job {job_id} in this catalog (is the worker on the same database?)")
    if job.state not in ACTIVE:
        log.info("job %s is already %s: nothing to do", job_id, job.state)
        return None
    parent = session.get(Job, job.parent_id) if job.parent_id else None
    if parent is not None and parent.state != JobState.SUCCEEDED:
        cancel_jobs(session, [job_id], f"upstream job {parent.id} is {parent.state}")
        return None
    if not leases.acquire(session, lease_name(job_id), holder, lease_s):
        held = leases.holder_of(session, lease_name(job_id))
        wait = (held[1] - utcnow()).total_seconds() if held else 1.0
        log.info("job %s is still leased by %s; retrying in %.0fs", job_id, held, wait)
        raise RetryJob(max(1.0, wait + 1.0))
    claimed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(ACTIVE))
        .values(state=JobState.RUNNING, attempts=Job.attempts + 1, worker_host=host,
                started_at=job.started_at or utcnow(), error=None, message=None, progress=0.0)
    ).rowcount
    session.commit()
    if not claimed:  # cancelled between our read and our write
        leases.release(session, lease_name(job_id), holder)
        return None
    session.refresh(job)
    return JobContext(job_id=job_id, kind=job.kind, args=dict(job.args or {}),
                      attempt=job.attempts, parent_result=parent.result if parent else None)


def _end(
    job_id: int,
    holder: str,
    *,
    state: str | None = None,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    message: str | None = None,
    expect: str = JobState.RUNNING,
) -> None:
    """Leave ``running`` (unless someone cancelled the job meanwhile) and free the lease; a
    dropped database connection is tried again (the write is conditional, so a repeat of a
    write that did commit changes nothing)."""

    retrying(f"job {job_id}: record {state or expect}",
             lambda: _write_end(job_id, holder, state=state, result=result, error=error,
                                message=message, expect=expect))


def _write_end(
    job_id: int,
    holder: str,
    *,
    state: str | None,
    result: dict[str, Any] | None,
    error: str | None,
    message: str | None,
    expect: str,
) -> None:
    with session_scope() as session:
        values: dict[str, Any] = {"message": message}
        if state is not None:
            values["state"] = state
        if state in JobState.FINISHED:
            values["finished_at"] = utcnow()
        if state == JobState.SUCCEEDED:
            values.update(progress=1.0, result=result)
        if error is not None:
            values["error"] = error
        moved = session.execute(
            update(Job).where(Job.id == job_id, Job.state == expect).values(**values)
        ).rowcount
        if not moved and result is not None:  # cancelled while it ran: keep what it did
            session.execute(update(Job).where(Job.id == job_id).values(result=result))
        if state == JobState.FAILED:
            cancel_jobs(session, followers(session, job_id), f"upstream job {job_id} failed")
        leases.release(session, lease_name(job_id), holder)


def describe(exc: BaseException, limit: int = 4000) -> str:
    """First line: the error itself (what `shoal jobs list` shows); then the traceback's end."""
    trace = "".join(traceback.format_exception(exc))
    return f"{type(exc).__name__}: {exc}\n\n{trace[-limit:]}"


def followers(session: Session, job_id: int) -> list[int]:
    """The jobs chained after this one, transitively."""
    found: list[int] = []
    frontier = [job_id]
    while frontier:
        frontier = list(session.scalars(select(Job.id).where(Job.parent_id.in_(frontier))))
        found.extend(frontier)
    return found


def cancel_jobs(session: Session, job_ids: list[int], reason: str) -> list[int]:
    """Mark the still active ones cancelled; returns those that were. Running bodies notice
    at their next progress report or heartbeat."""
    if not job_ids:
        return []
    # the ids the UPDATE itself moved: a job that finished between a read and this write (its
    # body committed meanwhile) is not reported as cancelled
    moved = session.scalars(
        update(Job).where(Job.id.in_(job_ids), Job.state.in_(ACTIVE))
        .values(state=JobState.CANCELLED, message=reason, finished_at=utcnow())
        .returning(Job.id)
    )
    return sorted(moved)

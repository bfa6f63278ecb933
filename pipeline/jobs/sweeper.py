"""Finding jobs the broker no longer holds, and sending them again (or failing them).

A ``jobs`` row can outlive its Celery message: Redis restarted without persistence or lost its
data, a worker lost its broker connection and abandoned the task, the broker was down when a
chain's next step was due. The catalog is the truth, so a sweep compares the two:

- a ``running`` job whose heartbeat lease lapsed more than a lease period ago has no live
  worker (a redelivered copy of its message takes the lapsed lease over within a second), and
  none of its messages waits in a queue;
- a ``queued`` job that has been due (created, or its parent finished) for longer than
  ``SHOAL_JOB_LOST_AFTER`` has no message in any queue, and none reserved by a worker (or only
  one reserved for longer than any retry countdown: that worker died holding it).

Either is sent again with the rest of its chain, ``SHOAL_MAX_RECOVERIES`` times at most (the
bodies are idempotent and the runner takes the lapsed lease over); then it is failed with the
reason and its followers are cancelled. A queued follower of a failed or cancelled job is
cancelled, and a training run left ``running`` by a job that no longer runs is set back
(``queued`` when its job will run again, ``failed`` otherwise).

One process sweeps at a time (the ``sweeper`` lease): beat's leader on its ticks, or a thread
of any worker every ``SHOAL_SWEEP_INTERVAL`` seconds; `shoal jobs sweep` sweeps once, now.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import select, update
from sqlalchemy.orm import Session, aliased

from catalog import leases
from catalog.db import session_scope
from catalog.leases import as_utc
from catalog.models import Job, JobState, TrainingRun, utcnow
from catalog.settings import JobsSettings, get_settings
from pipeline.jobs.broker import QUEUES
from pipeline.jobs.runner import ACTIVE, cancel_jobs, followers, lease_name
from pipeline.jobs.submit import BROKER_DOWN, broker_configured, publish, run_here

log = logging.getLogger(__name__)

LEASE = "sweeper"


@dataclass
class BrokerView:
    """The task ids of the messages the broker holds: waiting in a queue, or reserved by a
    worker (unacked) since a time."""

    waiting: set[str] = field(default_factory=set)
    reserved_since: dict[str, float] = field(default_factory=dict)


@dataclass
class Lost:
    job_id: int
    state: str
    recoveries: int
    reason: str


@dataclass
class SweepReport:
    redispatched: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    runs_reset: list[int] = field(default_factory=list)
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"redispatched": self.redispatched, "failed": self.failed,
                "cancelled": self.cancelled, "runs_reset": self.runs_reset,
                "skipped": self.skipped}


def broker_view() -> BrokerView:
    """Read every Shoal queue and the unacked set of the Redis transport (kombu's own key
    names, prefix and priority lists); empty when no broker is configured."""
    view = BrokerView()
    if not broker_configured():
        return view
    from pipeline.jobs.broker import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0.2, interval_step=0.2,
                               interval_max=0.5)
        channel = conn.default_channel
        client = channel.client
        keys = {channel._q_for_pri(q, pri) for q in QUEUES for pri in channel.priority_steps}
        for key in keys:
            view.waiting.update(filter(None, map(task_id_of, client.lrange(key, 0, -1))))
        since = dict(client.zrange(channel.unacked_index_key, 0, -1, withscores=True))
        for tag, raw in client.hgetall(channel.unacked_key).items():
            task_id = task_id_of(json.loads(raw)[0])  # [message, exchange, routing key]
            if task_id:
                view.reserved_since[task_id] = float(since.get(tag, time.time()))
    return view


def task_id_of(message: bytes | str | dict[str, Any]) -> str | None:
    payload = json.loads(message) if isinstance(message, bytes | str) else message
    return (payload.get("headers") or {}).get("id")


def find_lost(session: Session, view: BrokerView, now: datetime,
              qs: JobsSettings) -> list[Lost]:
    parent = aliased(Job)
    rows = session.execute(
        select(Job, parent.state, parent.finished_at)
        .outerjoin(parent, parent.id == Job.parent_id)
        .where(Job.state.in_(ACTIVE)).order_by(Job.id)
    ).all()
    lost: list[Lost] = []
    for job, parent_state, parent_finished in rows:
        if parent_state is not None and parent_state != JobState.SUCCEEDED:
            continue  # carried inside its parent's message (orphans are cancelled before)
        if job.task_id in view.waiting:
            continue  # a worker will get it
        if job.state == JobState.RUNNING:
            held = leases.holder_of(session, lease_name(job.id))
            lapsed = (now - held[1]).total_seconds() if held else float("inf")
            if lapsed > qs.job_lease_seconds:
                ago = "no lease" if held is None else f"its lease lapsed {lapsed:.0f}s ago"
                lost.append(Lost(job.id, job.state, job.recoveries,
                                 f"running with no live worker ({ago})"))
            continue
        due = as_utc(parent_finished) if parent_finished else as_utc(job.created_at)
        waited = (now - due).total_seconds()
        if waited <= qs.job_lost_after:
            continue
        reserved = view.reserved_since.get(job.task_id or "")
        if reserved is not None and now.timestamp() - reserved <= (
                qs.retry_backoff_max + qs.job_lost_after):
            continue  # a worker holds it, maybe for a retry countdown
        where = "no message in the broker" if reserved is None else \
            "its message is reserved by a worker that never ran it"
        lost.append(Lost(job.id, job.state, job.recoveries,
                         f"queued {waited:.0f}s with {where}"))
    return lost


def cancel_orphans(session: Session) -> list[int]:
    """Queued followers of a job that failed or was cancelled can never run."""
    parent = aliased(Job)
    rows = session.execute(
        select(Job.id, parent.id, parent.state).join(parent, parent.id == Job.parent_id)
        .where(Job.state == JobState.QUEUED,
               parent.state.in_((JobState.FAILED, JobState.CANCELLED)))
    ).all()
    cancelled: list[int] = []
    for job_id, parent_id, parent_state in rows:
        cancelled += cancel_jobs(session, [job_id], f"upstream job {parent_id} is {parent_state}")
    return cancelled


def recover(lost: Lost, holder: str, qs: JobsSettings) -> str | None:
    """Send a lost job again (returns "redispatched") or fail it ("failed"); None when it
    moved meanwhile. The job's lease is taken for the change, so no worker starts it halfway."""
    with session_scope() as session:
        if not leases.acquire(session, lease_name(lost.job_id), holder, qs.job_lease_seconds):
            return None  # a worker has just taken it over
        same = (Job.id == lost.job_id, Job.state == lost.state,
                Job.recoveries == lost.recoveries)
        if lost.recoveries >= qs.max_recoveries:
            error = (f"JobLost: {lost.reason}; sent again {lost.recoveries} times, giving up "
                     f"(`shoal jobs retry {lost.job_id}` to try once more)")
            moved = session.execute(update(Job).where(*same).values(
                state=JobState.FAILED, error=error, message=None, finished_at=utcnow())).rowcount
            if moved:
                cancel_jobs(session, followers(session, lost.job_id),
                            f"upstream job {lost.job_id} failed")
        else:
            n = lost.recoveries + 1
            moved = session.execute(update(Job).where(*same).values(
                state=JobState.QUEUED, recoveries=n,
                message=f"sent again by the sweeper ({n}/{qs.max_recoveries}): {lost.reason}",
            )).rowcount
        leases.release(session, lease_name(lost.job_id), holder)
    if not moved:
        return None
    return "failed" if lost.recoveries >= qs.max_recoveries else "redispatched"


def resend(job_id: int) -> None:
    """The job and its still queued followers, as one chain again."""
    with session_scope() as session:
        chain = [session.get_one(Job, job_id)]
        chain += [j for j in (session.get_one(Job, i) for i in followers(session, job_id))
                  if j.state == JobState.QUEUED]
    if broker_configured():
        publish(chain)
    else:
        run_here([j.id for j in chain])


def reset_runs(session: Session) -> list[int]:
    """Training runs left ``running`` by a job that is no longer running."""
    rows = session.execute(
        select(TrainingRun.id, Job.id, Job.state).join(Job, Job.id == TrainingRun.job_id)
        .where(TrainingRun.state == JobState.RUNNING, Job.state != JobState.RUNNING)
    ).all()
    for run_id, job_id, job_state in rows:
        if job_state == JobState.QUEUED:
            values: dict[str, Any] = {"state": JobState.QUEUED,
                                      "error": f"interrupted: job {job_id} lost its worker and "
                                               "is queued again; it resumes from the last "
                                               "checkpoint"}
        else:
            values = {"state": JobState.FAILED, "finished_at": utcnow(),
                      "error": f"interrupted: its job {job_id} is {job_state}"}
        session.execute(update(TrainingRun).where(
            TrainingRun.id == run_id, TrainingRun.state == JobState.RUNNING).values(**values))
    return [run_id for run_id, _, _ in rows]


def sweep(holder: str | None = None) -> SweepReport:
    """One pass: orphans cancelled, lost jobs sent again or failed, stale runs reset."""
    qs = get_settings().jobs
    holder = holder or f"sweeper@{socket.gethostname()}:{os.getpid()}"
    report = SweepReport()
    try:
        view = broker_view()
    except Exception as exc:  # the broker is down: nothing could be sent now anyway
        report.skipped = f"broker unreachable: {exc}"
        return report
    with session_scope() as session:
        report.cancelled = cancel_orphans(session)
        session.commit()
        lost = find_lost(session, view, utcnow(), qs)
    for item in lost:
        outcome = recover(item, holder, qs)
        if outcome == "failed":
            report.failed.append(item.job_id)
            log.warning("job %s lost for good: %s", item.job_id, item.reason)
        elif outcome == "redispatched":
            log.warning("job %s was lost (%s); sending it again", item.job_id, item.reason)
            try:
                resend(item.job_id)
            except BROKER_DOWN as exc:  # leave it queued for the next sweep, uncounted
                undo_recovery(item.job_id)
                report.skipped = f"broker unreachable: {exc}"
                break
            report.redispatched.append(item.job_id)
    with session_scope() as session:
        report.runs_reset = reset_runs(session)
    return report


def undo_recovery(job_id: int) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED,
                                          Job.recoveries > 0)
                        .values(recoveries=Job.recoveries - 1))


class Sweeper:
    """Sweeps at most every ``every`` seconds, and only while it holds the ``sweeper`` lease
    (so a fleet of workers and beats sweeps once per interval; another takes over when the
    holder stops)."""

    def __init__(self, every: float | None = None) -> None:
        self.every = every if every is not None else get_settings().jobs.sweep_interval
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"
        self._next = 0.0

    def maybe_sweep(self) -> SweepReport | None:
        if time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self.every
        with session_scope() as session:
            if not leases.acquire(session, LEASE, self.holder, 2 * self.every + 5):
                return None
        report = sweep(self.holder)
        if report.redispatched or report.failed or report.cancelled or report.runs_reset:
            log.warning("sweep: %s", report.as_dict())
        return report


class SweepThread(threading.Thread):
    """A worker's sweeper: a daemon thread in the worker's main process."""

    def __init__(self, every: float) -> None:
        super().__init__(name="shoal-sweeper", daemon=True)
        self.sweeper = Sweeper(every)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.sweeper.every):
            try:
                self.sweeper.maybe_sweep()
            except Exception:  # the catalog is down: the next interval tries again
                log.warning("sweep failed", exc_info=True)


_thread: SweepThread | None = None


def start_in_worker(**_kwargs: Any) -> None:
    """``worker_ready`` handler: start this worker's sweeper thread (unless disabled)."""
    global _thread
    every = get_settings().jobs.sweep_interval
    if every > 0 and _thread is None:
        _thread = SweepThread(every)
        _thread.start()


def stop_in_worker(**_kwargs: Any) -> None:
    global _thread
    if _thread is not None:
        _thread.stopped.set()
        _thread = None

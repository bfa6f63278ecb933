"""Submitting work: a ``jobs`` row first, then the Celery message (or, with no broker, the run).

`shoal jobs` reads these rows, never the broker. With ``SHOAL_BROKER_URL`` unset the same task
bodies run here, synchronously, through the same state transitions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

from kombu.exceptions import OperationalError as BrokerOperationalError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog.db import session_scope
from catalog.models import Job, JobState
from catalog.settings import get_settings
from pipeline.errors import ServiceUnavailable, UsageError
from pipeline.jobs.broker import QUEUE_OF
from pipeline.jobs.runner import cancel_jobs, followers

log = logging.getLogger(__name__)

Step = tuple[str, dict[str, Any]]
BROKER_DOWN = (BrokerOperationalError, OSError)
RETRYABLE = (JobState.FAILED, JobState.CANCELLED)


def broker_configured() -> bool:
    return bool(get_settings().jobs.broker_url)


def submit(kind: str, args: dict[str, Any] | None = None, *,
           idempotency_key: str | None = None) -> Job:
    """Queue one job (or run it here when no broker is configured) and return its row.

    A second submit with the same ``idempotency_key`` returns the first job and queues nothing.
    """
    return submit_chain([(kind, args or {})], idempotency_key=idempotency_key)[0]


def submit_chain(steps: Sequence[Step], *, idempotency_key: str | None = None,
                 wait: bool = True) -> list[Job]:
    """Queue jobs that run one after the other (a Celery chain); each row's parent is the one
    before it, and a step starts only once its parent succeeded.

    With no broker the chain runs here: before returning, or with ``wait=False`` (a server
    answering a request) in a background thread, the rows returned still queued."""
    jobs, created = prepare_chain(steps, idempotency_key)
    if created and (wait or broker_configured()):
        dispatch(jobs)
    elif created:
        threading.Thread(target=dispatch, args=(jobs,), daemon=True,
                         name=f"jobs-{jobs[0].id}").start()
    return reload(jobs)


def prepare_chain(
    steps: Sequence[Step], idempotency_key: str | None = None
) -> tuple[list[Job], bool]:
    """The committed, not yet dispatched rows of a chain (or the existing ones of its key)."""
    if not steps:
        raise UsageError("nothing to submit")
    for kind, _args in steps:
        if kind not in QUEUE_OF:
            raise UsageError(f"unknown job kind {kind!r}; one of: {', '.join(QUEUE_OF)}")
    with session_scope() as session:
        return create_rows(session, steps, idempotency_key)


def reload(jobs: Sequence[Job]) -> list[Job]:
    """The rows as the catalog holds them now."""
    with session_scope() as session:
        return [session.get_one(Job, job.id) for job in jobs]


def create_rows(
    session: Session, steps: Sequence[Step], idempotency_key: str | None
) -> tuple[list[Job], bool]:
    """The rows of a chain, committed; or the existing ones if the key was used before."""
    if idempotency_key:
        existing = chain_of(session, idempotency_key)
        if existing:
            return existing, False
    jobs = add_rows(session, steps, idempotency_key)
    try:
        session.commit()
    except IntegrityError:  # the same key, submitted at the same moment elsewhere
        session.rollback()
        assert idempotency_key
        return chain_of(session, idempotency_key), False
    return jobs, True


def add_rows(session: Session, steps: Sequence[Step], idempotency_key: str | None) -> list[Job]:
    """Queued rows for a chain, flushed but not committed (the caller owns the transaction)."""
    jobs: list[Job] = []
    parent_id: int | None = None
    for i, (kind, args) in enumerate(steps):
        key = None
        if idempotency_key:
            key = idempotency_key if i == 0 else f"{idempotency_key}#{i + 1}"
        job = Job(kind=kind, args=dict(args), idempotency_key=key, task_id=str(uuid4()),
                  state=JobState.QUEUED, parent_id=parent_id)
        session.add(job)
        session.flush()
        parent_id = job.id
        jobs.append(job)
    return jobs


def chain_of(session: Session, idempotency_key: str) -> list[Job]:
    first = session.scalar(select(Job).where(Job.idempotency_key == idempotency_key))
    if first is None:
        return []
    rest = followers(session, first.id)
    return [first, *(session.get_one(Job, i) for i in rest)]


def dispatch(jobs: Sequence[Job], *, reraise: bool = False) -> None:
    """Send committed job rows to the broker as one chain, or run them here, in order
    (``reraise``: the error that failed a job here is raised again once recorded)."""
    if broker_configured():
        enqueue(jobs)
    else:
        run_here([job.id for job in jobs], reraise=reraise)


def enqueue(jobs: Sequence[Job]) -> None:
    """Publish, or cancel the jobs with the reason when the broker cannot be reached (the
    publish gives up within seconds: see ``task_publish_retry_policy``)."""
    try:
        publish(jobs)
    except BROKER_DOWN as exc:
        with session_scope() as session:
            cancel_jobs(session, [job.id for job in jobs], f"broker unreachable: {exc}")
        reason = str(exc).strip().rstrip(".")
        raise ServiceUnavailable(f"cannot reach the broker to queue job {jobs[0].id}: {reason}; "
                                 f"`shoal jobs retry {jobs[0].id}` once it is back") from exc


def publish(jobs: Sequence[Job]) -> None:
    """One Celery message for the chain (raises one of BROKER_DOWN when it cannot be sent)."""
    from celery import chain

    from pipeline.jobs import tasks

    sigs = [tasks.TASKS[job.kind].si(job.id).set(task_id=job.task_id) for job in jobs]
    (sigs[0] if len(sigs) == 1 else chain(*sigs)).apply_async()


def run_here(job_ids: Sequence[int], *, reraise: bool = False) -> None:
    """The embedded default: each job's body in this process; a failure stops the chain."""
    from pipeline.jobs.runner import RetryJob
    from pipeline.jobs.tasks import run_in_process

    for i, job_id in enumerate(job_ids):
        try:
            run_in_process(job_id)
        except KeyboardInterrupt:  # Ctrl-C: the job and the rest of its chain will not run
            with session_scope() as session:
                cancel_jobs(session, list(job_ids[i:]), "interrupted")
            raise
        except RetryJob:
            log.warning("job %s is held by another process; left queued", job_id)
            return
        except Exception:  # recorded on the job row; its followers are cancelled
            if reraise:
                raise
            return


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise UsageError(f"no job {job_id}")
    return job


def list_jobs(
    session: Session, *, state: str | None = None, kind: str | None = None, limit: int = 50
) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    if kind:
        query = query.where(Job.kind == kind)
    return list(session.scalars(query))


def cancel(job_id: int) -> list[int]:
    """Cancel a queued or running job and everything chained after it; returns their ids."""
    with session_scope() as session:
        job = get_job(session, job_id)
        if job.state in JobState.FINISHED:
            raise UsageError(f"job {job_id} already {job.state}")
        ids = cancel_jobs(session, [job_id, *followers(session, job_id)], "cancelled by user")
        if job_id not in ids:  # it finished while we were cancelling it
            session.refresh(job)
            raise UsageError(f"job {job_id} already {job.state}")
        task_ids = list(session.scalars(select(Job.task_id).where(Job.id.in_(ids))))
    if broker_configured() and task_ids:
        from pipeline.jobs.broker import app

        try:  # spares workers the delivery; the catalog state alone already stops it
            app.control.revoke([t for t in task_ids if t])
        except Exception as exc:
            log.warning("could not broadcast the revoke: %s", exc)
    return ids


def job_detail(session: Session, job_id: int) -> dict[str, Any]:
    """One job with the ids of the jobs chained after it."""
    data = job_dict(get_job(session, job_id))
    data["followers"] = followers(session, job_id)
    return data


def retry(job_id: int) -> list[Job]:
    """Queue a failed or cancelled job again, with the followers that were cancelled with it.

    The same rows become a new attempt (``attempts`` counts on; the sweeper's count starts
    over): the rows its work wrote carry its job id, so the new attempt finds and resumes
    them (a crawl its crawl state, training its checkpoint). Each gets a new Celery task id,
    since workers drop messages of a revoked (cancelled) id.
    """
    with session_scope() as session:
        job = get_job(session, job_id)
        if job.state not in RETRYABLE:
            raise UsageError(f"job {job_id} is {job.state}: only a failed or cancelled job "
                             "can be retried")
        parent = session.get(Job, job.parent_id) if job.parent_id else None
        if parent is not None and parent.state != JobState.SUCCEEDED:
            raise UsageError(f"job {job_id} runs after job {parent.id}, which is "
                             f"{parent.state}: retry job {parent.id} instead")
        ids = [job_id, *followers(session, job_id)]
        why = first_line(job.error) or job.message or job.state
        requeued = []
        for i in ids:
            moved = session.execute(
                update(Job).where(Job.id == i, Job.state.in_(RETRYABLE))
                .values(state=JobState.QUEUED, task_id=str(uuid4()), recoveries=0,
                        progress=0.0, finished_at=None,
                        message=f"retried after: {why}"[:500])
            ).rowcount
            if moved:
                requeued.append(i)
        if job_id not in requeued:  # retried by someone else at this very moment
            raise UsageError(f"job {job_id} is already queued again")
        session.commit()
        jobs = [session.get_one(Job, i) for i in requeued]
    dispatch(jobs)
    with session_scope() as session:
        return [session.get_one(Job, i) for i in requeued]


def first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "progress": round(job.progress or 0.0, 3),
        "message": job.message,
        "args": job.args,
        "result": job.result,
        "error": job.error,
        "worker_host": job.worker_host,
        "attempts": job.attempts,
        "recoveries": job.recoveries,
        "parent_id": job.parent_id,
        "task_id": job.task_id,
        "idempotency_key": job.idempotency_key,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }

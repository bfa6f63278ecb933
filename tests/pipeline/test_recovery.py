"""Lost jobs found again and `shoal jobs retry`, on the embedded default (no broker: a sweep
runs what it finds here, through the same runner)."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from typer.testing import CliRunner

from catalog import leases
from catalog.db import session_scope
from catalog.models import Job, JobState, TrainingRun, utcnow
from pipeline.cli import app
from pipeline.jobs import submit as jobs
from pipeline.jobs.runner import lease_name
from pipeline.jobs.submit import add_rows
from tests.pipeline.conftest import job_row

runner = CliRunner()


def cli(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def stale_rows(steps: list[tuple[str, dict]], *, state: str = JobState.QUEUED,
               age_s: float = 3600) -> list[int]:
    """Rows as a broker that lost their messages leaves them: never picked up, or running
    with no heartbeat since ``age_s`` ago."""
    with session_scope() as session:
        chain = add_rows(session, steps, None)
        ids = [job.id for job in chain]
        session.execute(update(Job).where(Job.id.in_(ids))
                        .values(created_at=utcnow() - timedelta(seconds=age_s)))
        if state == JobState.RUNNING:
            session.execute(update(Job).where(Job.id == ids[0])
                            .values(state=state, attempts=1, worker_host="gone@host"))
            leases.acquire(session, lease_name(ids[0]), "gone@host:1", 1)
            session.execute(update(leases.Lease).where(leases.Lease.name == lease_name(ids[0]))
                            .values(expires_at=utcnow() - timedelta(seconds=age_s)))
    return ids


def test_retry_requeues_a_failed_job_and_its_cancelled_followers(
    sqlite_env, fishdata: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "later"
    first, second = jobs.submit_chain([
        ("import_photos", {"path": str(folder), "species": "hairtail"}), ("dedupe", {})])
    assert (first.state, second.state) == (JobState.FAILED, JobState.CANCELLED)
    out = cli("jobs", "retry", str(second.id), code=2)  # its parent failed: retry that one
    assert out.strip() == f"error: job {second.id} runs after job {first.id}, which is " \
        f"failed: retry job {first.id} instead"

    folder.mkdir()
    for photo in sorted((fishdata / "web-20" / "Mola").iterdir())[:3]:
        shutil.copy(photo, folder)
    again = json.loads(cli("jobs", "retry", str(first.id), "--json"))
    assert [j["id"] for j in again] == [first.id, second.id]  # the same rows
    assert [j["state"] for j in again] == [JobState.SUCCEEDED] * 2, again
    assert [j["attempts"] for j in again] == [2, 1]
    assert again[0]["result"]["new"] + again[0]["result"]["rejected"] == 3
    assert again[0]["task_id"] != first.task_id  # a revoked id would be dropped by workers

    out = cli("jobs", "retry", str(first.id), code=2)
    assert out.strip() == f"error: job {first.id} is succeeded: only a failed or cancelled " \
        "job can be retried"
    assert cli("jobs", "retry", "999", code=2).strip() == "error: no job 999"


def test_sweep_finds_lost_jobs_and_runs_them_again(sqlite_env, fishdata: Path) -> None:
    photos = str(fishdata / "web-20" / "Mola")
    running, follower = stale_rows(
        [("import_photos", {"path": photos, "species": "hairtail"}), ("dedupe", {})],
        state=JobState.RUNNING)
    (queued,) = stale_rows([("dedupe", {})])
    (fresh,) = stale_rows([("dedupe", {})], age_s=0)  # just submitted: its message may be on
    # the way
    (failed, orphan) = stale_rows([("dedupe", {}), ("dedupe", {})])
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == failed).values(state=JobState.FAILED))

    report = json.loads(cli("jobs", "sweep", "--json"))
    assert report == {"redispatched": [running, queued], "failed": [], "cancelled": [orphan],
                      "runs_reset": [], "skipped": None}
    done = job_row(running)
    assert done.state == JobState.SUCCEEDED, done.error
    assert done.attempts == 2 and done.recoveries == 1
    assert done.worker_host.startswith("in-process@")
    assert job_row(follower).state == JobState.SUCCEEDED  # sent again with its chain
    assert job_row(queued).state == JobState.SUCCEEDED and job_row(queued).recoveries == 1
    assert job_row(fresh).state == JobState.QUEUED
    assert job_row(orphan).message == f"upstream job {failed} is failed"
    assert json.loads(cli("jobs", "sweep", "--json"))["redispatched"] == []


def test_sweep_gives_up_with_a_reason_and_reconciles_training_runs(sqlite_env) -> None:
    (lost, after) = stale_rows([("train", {"arch": "resnet34"}), ("dedupe", {})],
                               state=JobState.RUNNING)
    (waiting,) = stale_rows([("train", {"arch": "resnet34"})], age_s=0)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == lost).values(recoveries=3))
        dead = TrainingRun(arch="resnet34", state=JobState.RUNNING, job_id=lost)
        resumable = TrainingRun(arch="resnet34", state=JobState.RUNNING, job_id=waiting)
        session.add_all([dead, resumable])
        session.flush()
        dead_id, resumable_id = dead.id, resumable.id

    out = cli("jobs", "sweep")
    assert f"failed: {lost}" in out and f"runs reset: {dead_id}, {resumable_id}" in out
    job = job_row(lost)
    assert job.state == JobState.FAILED
    assert job.error.startswith("JobLost: running with no live worker (its lease lapsed ")
    assert job.error.endswith(f"sent again 3 times, giving up (`shoal jobs retry {lost}` to "
                              "try once more)")
    assert job_row(after).state == JobState.CANCELLED
    with session_scope() as session:
        dead_run = session.get_one(TrainingRun, dead_id)
        assert dead_run.state == JobState.FAILED
        assert dead_run.error == f"interrupted: its job {lost} is failed"
        assert session.get_one(TrainingRun, resumable_id).state == JobState.QUEUED
    listed = json.loads(cli("jobs", "list", "--state", "failed", "--json"))
    assert [j["id"] for j in listed] == [lost] and listed[0]["recoveries"] == 3

"""Real Redis, real worker processes: failures recorded, SIGKILL redelivery without doubles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.models import Image, ImageSource, Job, JobState
from catalog.species import get_species
from pipeline.cli import app
from pipeline.jobs import submit as jobs
from tests.pipeline.conftest import finished, job_row, wait_until

pytestmark = [pytest.mark.celery, pytest.mark.postgres, pytest.mark.redis]


def test_a_job_that_raises_is_recorded_with_its_error_and_stops_its_chain(
    start_worker, fishdata: Path
) -> None:
    worker = start_worker("w-raise")
    first, second = jobs.submit_chain([
        ("import_photos", {"path": "/no/such/folder", "species": "chub-mackerel"}),
        ("import_photos", {"path": str(fishdata / "web-20" / "Mola"), "species": "hairtail"}),
    ])
    assert first.state == second.state == JobState.QUEUED
    assert second.parent_id == first.id
    wait_until(lambda: finished(second.id), what="the chain")
    failed = job_row(first.id)
    assert failed.state == JobState.FAILED
    assert failed.error.startswith("UsageError: no such file or folder")
    assert "Traceback" in failed.error
    assert failed.worker_host.startswith("w-raise@")
    assert failed.attempts == 1  # not a network error: no retry
    # the row is written inside the task; Celery logs the failure after it returns
    worker.wait_for("raised unexpected: UsageError", timeout=30)
    after = job_row(second.id)
    assert after.state == JobState.CANCELLED and after.attempts == 0
    assert f"upstream job {first.id} failed" in after.message


def test_sigkilled_worker_task_is_redelivered_without_double_rows(
    start_worker, fishdata: Path
) -> None:
    folder = fishdata / "web-20" / "Baim"
    n_files = len(list(folder.iterdir()))
    first = start_worker("w-doomed", queues="crawl")
    job = jobs.submit("import_photos", {"path": str(folder), "species": "chub-mackerel"})

    def partly_done() -> bool:
        with session_scope() as session:
            state = session.scalar(select(Job.state).where(Job.id == job.id))
            rows = session.scalar(select(func.count()).select_from(Image))
        assert state in (JobState.QUEUED, JobState.RUNNING), f"job ended {state} before the kill"
        return state == JobState.RUNNING and rows >= 10  # the first batch is committed

    wait_until(partly_done, what="the import to commit its first rows")
    first.kill()
    killed = job_row(job.id)
    assert killed.state == JobState.RUNNING and killed.attempts == 1
    assert killed.worker_host.startswith("w-doomed@")

    start_worker("w-heir", queues="crawl")
    done = wait_until(lambda: finished(job.id), what="the redelivered job")
    assert done.state == JobState.SUCCEEDED, done.error
    assert done.attempts == 2
    assert done.worker_host.startswith("w-heir@")
    # the second attempt found the first one's rows instead of writing them again
    assert done.result["existing"] >= 10
    assert done.result["new"] + done.result["existing"] + done.result["rejected"] == n_files
    with session_scope() as session:
        species_id = get_species(session, "chub-mackerel").id
        images = session.scalar(select(func.count()).select_from(Image)
                                .where(Image.expected_species_id == species_id))
        sources = session.scalar(select(func.count()).select_from(ImageSource))
        distinct = session.scalar(select(func.count(func.distinct(Image.sha256))))
    assert sources == n_files
    assert images == distinct == n_files - done.result["rejected"]


def test_direct_commands_wait_for_their_jobs_on_a_worker(start_worker, fishdata: Path) -> None:
    """With a broker, `shoal import`, `shoal dedupe` and `shoal dataset create` queue their job,
    follow its row until a worker finished it, and print what it did; a user error on the
    worker is one line and exit code 2 here, as in-process."""
    start_worker("w-direct")
    runner = CliRunner()
    folder = fishdata / "web-20" / "Mola"
    imported = runner.invoke(app, ["import", str(folder), "--species", "hairtail", "--json"])
    assert imported.exit_code == 0, imported.output
    report = json.loads(imported.stdout)
    assert report["files"] == len(list(folder.iterdir())) and report["new"] > 0
    deduped = runner.invoke(app, ["dedupe", "--json"])
    assert deduped.exit_code == 0, deduped.output
    assert json.loads(deduped.stdout)["new_images"] == report["new"]
    refused = runner.invoke(app, ["dataset", "create", "--min-per-class", "1"])
    assert refused.exit_code == 2, refused.output
    assert "dataset_create job" in refused.output and "UsageError" in refused.output
    assert "Traceback" not in refused.output
    with session_scope() as session:
        rows = list(session.scalars(select(Job).order_by(Job.id)))
    assert [r.kind for r in rows] == ["import_photos", "dedupe", "dataset_create"]
    assert [r.state for r in rows] == [JobState.SUCCEEDED] * 2 + [JobState.FAILED]
    assert all(r.worker_host.startswith("w-direct@") for r in rows)
    assert rows[0].result == report

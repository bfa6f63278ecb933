"""The embedded default: no broker, the same task bodies run in-process; jobs and schedule CLIs."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.leases import as_utc
from catalog.limits import limits_from_settings
from catalog.models import (
    CrawlSchedule,
    DatasetVersion,
    Image,
    ImageStatus,
    Job,
    JobState,
    TrainingRun,
)
from catalog.settings import get_settings
from catalog.species import get_species
from catalog.store import ImageStore
from pipeline.cli import app
from pipeline.importer import import_files, list_files
from pipeline.jobs import submit as jobs
from pipeline.jobs.schedules import claim_due, parse_every
from pipeline.jobs.tasks import network_retry_in

runner = CliRunner()


def cli(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout


def image_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Image))


def test_submit_runs_in_process_without_a_broker(sqlite_env, fishdata: Path) -> None:
    folder = fishdata / "web-20" / "Mola"
    args = {"path": str(folder), "species": "hairtail"}
    job = jobs.submit("import_photos", args, idempotency_key="mola")
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.worker_host.startswith("in-process@")
    assert job.progress == 1.0 and job.attempts == 1
    n_files = len(list(folder.iterdir()))
    assert job.result["new"] + job.result["rejected"] == n_files
    assert image_count() == job.result["new"]

    again = jobs.submit("import_photos", args, idempotency_key="mola")
    assert again.id == job.id and again.attempts == 1  # not run a second time
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_failure_is_recorded_and_stops_the_chain(sqlite_env) -> None:
    first, second = jobs.submit_chain([
        ("import_photos", {"path": "/no/such/folder", "species": "hairtail"}),
        ("dedupe", {}),
    ])
    assert first.state == JobState.FAILED
    assert first.error.splitlines()[0] == "UsageError: no such file or folder on " \
        f"{first.worker_host.split('@')[1]}: /no/such/folder"
    assert second.state == JobState.CANCELLED and second.attempts == 0
    out = json.loads(cli("jobs", "submit", "import_photos", "-a", "path=/nope",
                         "-a", "species=hairtail", "--json", code=2))
    assert out[0]["state"] == "failed"


def test_jobs_list_show_cancel(sqlite_env) -> None:
    with session_scope() as session:
        queued, created = jobs.create_rows(
            session, [("dataset_create", {"min_per_class": 5}), ("train", {"arch": "resnet34"})],
            None)
    assert created
    listed = json.loads(cli("jobs", "list", "--json"))
    assert [d["id"] for d in listed] == [queued[1].id, queued[0].id]
    assert {d["state"] for d in listed} == {"queued"}
    assert json.loads(cli("jobs", "list", "--kind", "train", "--json"))[0]["id"] == queued[1].id

    shown = json.loads(cli("jobs", "show", str(queued[0].id), "--json"))
    assert shown["args"] == {"min_per_class": 5} and shown["followers"] == [queued[1].id]

    cancelled = json.loads(cli("jobs", "cancel", str(queued[0].id), "--json"))
    assert cancelled == {"cancelled": [queued[0].id, queued[1].id]}
    assert json.loads(cli("jobs", "show", str(queued[1].id), "--json"))["state"] == "cancelled"
    assert "already cancelled" in runner.invoke(app, ["jobs", "cancel", str(queued[0].id)]).output
    cli("jobs", "cancel", str(queued[0].id), code=2)
    cli("jobs", "show", "999", code=2)
    # a cancelled job that is delivered anyway does nothing
    from pipeline.jobs.tasks import run_in_process

    assert run_in_process(queued[0].id) is None
    assert cli("jobs", "list")  # the table renders


def test_cancel_stops_a_running_job(sqlite_env, fishdata: Path, monkeypatch) -> None:
    from pipeline.jobs.runner import JobContext

    monkeypatch.setattr("pipeline.jobs.runner.PROGRESS_EVERY_S", 0.0)  # every report is written
    # the body pauses after its first report (between transactions) until the cancel is in,
    # so the test does not race the import to its end
    reported, cancelled = threading.Event(), threading.Event()
    report = JobContext.progress

    def pausing_progress(self: JobContext, fraction: float, message: str | None = None) -> None:
        report(self, fraction, message)
        if not reported.is_set():
            reported.set()
            assert cancelled.wait(60)

    monkeypatch.setattr(JobContext, "progress", pausing_progress)
    folder = fishdata / "web-20" / "Baim"
    box: dict[str, Job] = {}
    thread = threading.Thread(target=lambda: box.update(job=jobs.submit(
        "import_photos", {"path": str(folder), "species": "hairtail"})))
    thread.start()
    assert reported.wait(60)
    with session_scope() as session:
        job = session.scalars(select(Job)).one()
    assert job.state == JobState.RUNNING and job.progress > 0
    assert jobs.cancel(job.id) == [job.id]
    cancelled.set()
    thread.join(timeout=120)
    done = box["job"]
    assert done.state == JobState.CANCELLED
    assert done.message == "cancelled while running"
    assert 0 < image_count() < len(list(folder.iterdir()))


def test_cancel_of_a_job_that_just_finished_says_so(sqlite_env, monkeypatch) -> None:
    from pipeline.jobs.runner import cancel_jobs

    with session_scope() as session:
        rows, _ = jobs.create_rows(session, [("dataset_create", {}), ("train", {})], None)
        # the first finished after the caller read it as running: the UPDATE moves no row
        session.execute(update(Job).where(Job.id == rows[0].id)
                        .values(state=JobState.SUCCEEDED))
        assert cancel_jobs(session, [rows[0].id], "late") == []
    cli("jobs", "cancel", str(rows[0].id), code=2)
    assert json.loads(cli("jobs", "show", str(rows[1].id), "--json"))["state"] == "queued"

    # the same race inside `jobs cancel`: it read the job as queued, then it finished
    with session_scope() as session:
        (late,), _ = jobs.create_rows(session, [("dataset_create", {})], None)
    real_followers = jobs.followers

    def finishing_meanwhile(session, job_id: int) -> list[int]:  # type: ignore[no-untyped-def]
        with session_scope() as other:
            other.execute(update(Job).where(Job.id == late.id).values(state=JobState.FAILED))
        return real_followers(session, job_id)

    monkeypatch.setattr(jobs, "followers", finishing_meanwhile)
    result = runner.invoke(app, ["jobs", "cancel", str(late.id)])
    assert result.exit_code == 2 and "already failed" in result.output


def test_schedule_commands_and_atomic_claim(sqlite_env) -> None:
    made = json.loads(cli("schedule", "set", "--species", "hairtail", "--every", "7d",
                          "--source", "wikimedia", "--source", "baike", "--limit", "20",
                          "--json"))
    assert [(d["source"], d["every"], d["limit"]) for d in made] == [
        ("baike", "7d", 20), ("wikimedia", "7d", 20)]
    cli("schedule", "set", "--species", "hairtail", "--every", "fortnight", code=2)
    cli("schedule", "set", "--species", "no-such-fish", "--every", "1d", code=2)

    with session_scope() as session:
        chains = claim_due(session)
        assert [[j.kind for j in c] for c in chains] == [["crawl", "dedupe"]] * 2
        assert claim_due(session) == []  # claimed: not due any more
        rows = session.scalars(select(CrawlSchedule)).all()
        for row in rows:
            # on the schedule's grid: a week after the claimed run, which was due just now
            gap = as_utc(row.next_run_at) - as_utc(row.last_run_at)
            assert timedelta(days=7, minutes=-1) < gap <= timedelta(days=7)
        assert {row.last_job_id for row in rows} == {c[0].id for c in chains}
    assert {c[0].idempotency_key.split(":")[0] for c in chains} == {"schedule"}

    listed = json.loads(cli("schedule", "list", "--json"))
    assert len(listed) == 2 and all(d["last_job_id"] for d in listed)
    cli("schedule", "remove", "--species", "hairtail", "--source", "baike")
    assert [d["source"] for d in json.loads(cli("schedule", "list", "--json"))] == ["wikimedia"]
    cli("schedule", "remove", "--species", "hairtail", "--source", "baike", code=2)


def test_parse_every_and_retry_policy() -> None:
    assert parse_every("7d") == 7 * 86400
    assert parse_every("1d12h") == 36 * 3600
    assert parse_every("90m") == 5400
    assert 1 <= network_retry_in(ConnectionError("refused"), 1) <= 3
    assert network_retry_in(ValueError("bad input"), 1) is None
    assert network_retry_in(TimeoutError(), 99) is None  # retries exhausted


@pytest.mark.parametrize("command", [["worker"], ["beat"]])
def test_worker_and_beat_need_a_broker(sqlite_env, command: list[str]) -> None:
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert "SHOAL_BROKER_URL" in result.output


def test_training_queue_runs_one_job_at_a_time(sqlite_env) -> None:
    result = runner.invoke(app, ["worker", "-Q", "train", "-c", "4"])
    assert result.exit_code == 2 and "one job at a time" in result.output


def test_create_then_train_chain_in_process(sqlite_env, fishdata: Path) -> None:
    """A dataset version created by a queued job, then trained on (tiny recipe), then exported
    by a job of its own (the training chain has no export step: training reads the store)."""
    settings = get_settings()
    with session_scope() as session:  # 8 small crops a species, approved as if reviewed
        for slug, folder in {"hairtail": "fish_01", "chub-mackerel": "fish_02"}.items():
            files = list_files(fishdata / "f4k-23" / folder)[:8]
            import_files(session, ImageStore(settings.image_dir), files,
                         get_species(session, slug).id, limits_from_settings(settings))
        session.execute(update(Image).values(status=ImageStatus.APPROVED))
    create, train = jobs.submit_chain([
        ("dataset_create", {"name": "queued-v1", "min_per_class": 5, "val_ratio": 0.25}),
        ("train", {"arch": "resnet34", "weights": "none",
                   "hyper": {"image_size": 32, "epochs": 1, "batch_size": 8}}),
    ])
    export = jobs.submit("dataset_export", {"version": create.result["version"],
                                            "format": "imagefolder"})
    for job in (create, export, train):
        assert job.state == JobState.SUCCEEDED, job.error
    with session_scope() as session:
        version = session.scalar(select(DatasetVersion))
        run = session.scalar(select(TrainingRun))
    assert version.name == "queued-v1" and version.job_id == create.id
    assert create.result["version"] == export.result["version"] == version.id
    out = Path(export.result["path"])
    assert {p.name for p in out.iterdir()} >= {"train", "val"}
    assert {p.name for p in (out / "train").iterdir()} == {"hairtail", "chub-mackerel"}
    assert run.job_id == train.id and run.dataset_version_id == version.id
    assert train.result["run_id"] == run.id and run.state == JobState.SUCCEEDED
    # a redelivered create finds its version instead of freezing a second one
    from pipeline.jobs.runner import JobContext
    from pipeline.jobs.tasks import dataset_create_body

    again = dataset_create_body(JobContext(create.id, "dataset_create", create.args, 2, None))
    assert again["version"] == version.id
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(DatasetVersion)) == 1

"""The one flow: its stages as chains, and run in-process with a listener and failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import Job, JobState
from pipeline.errors import UsageError
from pipeline.jobs.flow import (
    FLOW,
    STAGE_NAMES,
    FlowRequest,
    chains,
    crawl_chain,
    run_flow,
    run_jobs,
)


def test_the_stages_in_order() -> None:
    assert STAGE_NAMES == ("crawl", "dedupe", "curate", "review", "dataset", "train", "predict")
    assert [s.name for s in FLOW] == list(STAGE_NAMES)


def test_chains_fan_out_at_the_first_stage_only() -> None:
    req = FlowRequest(crawls=(("mola", "wikimedia"), ("mola", "baike")), limit=5,
                      review="push", args={"review_push": {"species": ["mola"]}})
    built = chains(req, ("crawl", "dedupe", "review"))
    assert [[kind for kind, _ in chain] for chain in built] == [
        ["crawl", "dedupe", "review_push"]] * 2
    assert [chain[0][1]["source"] for chain in built] == ["wikimedia", "baike"]
    assert built[0][2][1] == {"species": ["mola"]}
    assert crawl_chain("mola", "wikimedia", 5, review=False) == [
        ("crawl", {"species": "mola", "source": "wikimedia", "limit": 5}), ("dedupe", {})]
    with pytest.raises(UsageError, match="fan out"):
        chains(FlowRequest(runs=({"arch": "a"}, {"arch": "b"})), ("dataset", "train"))
    # training after the dataset stage in a chain: the version comes from the parent job
    [[create, train]] = chains(FlowRequest(runs=({"arch": "resnet34"},)), ("dataset", "train"))
    assert create == ("dataset_create", {}) and "dataset" not in train[1]


def test_in_process_listener_and_user_errors(sqlite_env, fishdata: Path) -> None:
    folder = fishdata / "web-20" / "Mola"
    events: list[tuple[int, str, int, int]] = []
    watched: list[str] = []
    [job] = run_jobs([[("import_photos", {"path": str(folder), "species": "hairtail"})]],
                     listener=lambda ctx, stage, done, total: events.append(
                         (ctx.job_id, stage, done, total)),
                     watch=lambda row: watched.append(row.state))
    n_files = len(list(folder.iterdir()))
    assert job.state == JobState.SUCCEEDED and job.result["files"] == n_files
    assert events[-1] == (job.id, "files", n_files, n_files) and len(events) == n_files
    assert watched == [JobState.SUCCEEDED]

    # a user error inside a job is recorded on its row, then raised here (one line, exit 2)
    bad = [[("import_photos", {"path": "/no/such/folder", "species": "hairtail"})]]
    with pytest.raises(UsageError, match="no such file or folder"):
        run_jobs(bad)
    # ... unless the stage tolerates it: then the failed row comes back
    [failed] = run_jobs(bad, tolerated=("UsageError",))
    assert failed.state == JobState.FAILED and failed.error.startswith("UsageError: ")

    done = run_flow(FlowRequest(args={"dedupe": {"radius": 4}}), ("crawl", "dedupe"))
    assert list(done) == ["dedupe"]  # no crawls asked for: the stage has no jobs
    assert done["dedupe"][0].result["radius"] == 4
    with session_scope() as session:
        kinds = [j.kind for j in session.scalars(select(Job).order_by(Job.id))]
    assert kinds == ["import_photos", "import_photos", "import_photos", "dedupe"]

"""The main job end to end on the embedded default, on a few species of the demo site."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_demo_runs_every_stage_and_summarises(sqlite_env, fishdata):
    result = runner.invoke(app, [
        "demo", "--fishdata", str(fishdata), "--species", "Mola", "--species", "Shing",
        "--limit", "40", "--source", "shop:market", "--source", "wikimedia",
        "--epochs", "2", "--views", "1", "--json",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{\n"):])
    assert summary["crawl_jobs"] == 4 and summary["crawl_failures"] == []
    assert summary["stages"].get("approved", 0) >= 10
    # the shop's first page carries the hostile files: each ends as a recorded reason
    assert summary["rejects"] and summary["url_failures"]
    # no Label Studio: the model approves what it is sure of, openly; suspects are held back
    assert "APPROVED BY THE MODEL" in summary["review"]
    curation = summary["curation"]
    assert curation["pool"] > 0 and curation["run_id"] >= 1
    assert Path(curation["gallery"]).is_file()
    assert summary["held_back"]["suspects"] >= 0
    assert summary["accuracy"]["before"]["accuracy"] is not None
    assert summary["accuracy"]["after"]["accuracy"] == summary["run"]["best_val_accuracy"]
    assert summary["predicted"]["run"] == summary["run"]["id"]
    version = summary["version"]
    assert version["name"] == "v1" and version["classes"] == 2
    assert version["train"] > 0 and version["val"] > 0
    run = summary["run"]
    assert run["state"] == "succeeded" and 0.0 <= run["best_val_accuracy"] <= 1.0
    assert run["epochs"] == 2
    report = Path(run["report"]).resolve()
    assert report == (sqlite_env.data_dir / "runs" / str(run["id"]) / "report.html").resolve()
    assert report.is_file() and "<html" in report.read_text()[:500].lower()

    # every stage ran as jobs: one succeeded job per stage (one per crawl), timed, with results
    listed = runner.invoke(app, ["jobs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    jobs = sorted(json.loads(listed.stdout), key=lambda j: j["id"])
    kinds = [j["kind"] for j in jobs]
    assert kinds == ["crawl"] * 4 + ["dedupe", "curate", "auto_accept", "approve_unsuspected",
                                     "dataset_create", "train", "predict"]
    for job in jobs:
        assert job["state"] == "succeeded", job
        assert job["started_at"] and job["finished_at"] and job["result"] is not None, job
        assert job["worker_host"].startswith("in-process@")
    by_kind = {j["kind"]: j["result"] for j in jobs}
    assert {(j["args"]["species"], j["args"]["source"]) for j in jobs[:4]} == {
        (s, src) for s in ("bd-mola", "bd-shing") for src in ("shop:market", "wikimedia")}
    assert by_kind["auto_accept"]["approved"] + by_kind["approve_unsuspected"]["approved"] \
        == summary["stages"]["approved"]
    assert by_kind["approve_unsuspected"]["curation_run_id"] == curation["run_id"]
    assert by_kind["curate"]["run_id"] == curation["run_id"]
    assert by_kind["predict"]["predicted"] == summary["predicted"]["images"]
    assert by_kind["dataset_create"]["name"] == "v1"
    assert by_kind["train"]["run_id"] == run["id"]
    assert by_kind["dedupe"]["duplicates"] == summary["duplicates"]


def test_demo_without_photos_fails_clearly(sqlite_env, tmp_path):
    result = runner.invoke(app, ["demo", "--fishdata", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "the demo's photos are missing" in result.output

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


def test_demo_without_photos_fails_clearly(sqlite_env, tmp_path):
    result = runner.invoke(app, ["demo", "--fishdata", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "the demo's photos are missing" in result.output

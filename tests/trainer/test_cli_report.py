"""The CLI end to end on the small dataset, and the HTML report rendered by headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess

from PIL import Image, ImageStat
from typer.testing import CliRunner

from pipeline.cli import app
from tests.trainer.conftest import FAST

runner = CliRunner()


def shoal(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def cli_train(dataset: str, *extra: str) -> dict:
    out = shoal("train", "--dataset", dataset, "--arch", "resnet34", "--weights", "none",
                "--epochs", "2", "--batch-size", str(FAST["batch_size"]),
                "--image-size", str(FAST["image_size"]), "--json", *extra)
    return last_json(out)[0]


def last_json(output: str) -> list:
    """The JSON list a command printed after its progress bars (which go to stderr)."""
    return json.loads(output[output.index("[\n"):])


def test_train_runs_predict_and_errors_through_the_cli(small_env) -> None:
    first = cli_train("small-v1", "--views", "2")
    second = cli_train("small-v1", "--lr", "1e-3", "--plain")
    assert first["state"] == second["state"] == "succeeded"
    rows = json.loads(shoal("runs", "list", "--json"))
    assert [r["id"] for r in rows] == [second["run"], first["run"]]
    assert rows[0]["arch"] == "resnet34" and rows[0]["epochs"] == 2
    assert rows[0]["best_val_accuracy"] == second["best_val_accuracy"]
    compared = json.loads(shoal("runs", "compare", str(first["run"]), str(second["run"]),
                                "--json"))
    accuracies = [r["best_val_accuracy"] for r in compared]
    assert accuracies == sorted(accuracies, reverse=True)
    shown = json.loads(shoal("runs", "show", str(first["run"]), "--json"))
    assert len(shown["epoch_metrics"]) == 2 and len(shown["class_metrics"]) == 3
    table = shoal("runs", "list")
    assert "2 training runs" in table and "resnet34" in table

    photo = sorted((small_env.image_dir).rglob("*.jpg"))[0]
    preds = json.loads(shoal("predict", str(photo), "--run", str(first["run"]), "--top-k", "2",
                             "--json"))
    assert len(preds[0]["predictions"]) == 2
    assert preds[0]["predictions"][0]["probability"] >= preds[0]["predictions"][1]["probability"]

    bad = runner.invoke(app, ["train", "--dataset", "small-v1", "--arch", "resnet50",
                              "--weights", str(first["checkpoint"])])
    assert bad.exit_code == 2 and "checkpoint of resnet34, not resnet50" in bad.output
    failed = json.loads(shoal("runs", "list", "--json"))[0]
    assert failed["state"] == "failed" and "checkpoint of resnet34" in failed["error"]
    missing = runner.invoke(app, ["predict", str(photo), "--run", "999"])
    assert missing.exit_code == 2 and "no training run 999" in missing.output

    resumed = last_json(shoal("train", "--resume", str(first["run"]), "--epochs", "3",
                              "--json"))[0]
    assert resumed["state"] == "succeeded" and resumed["run"] == first["run"]
    shown = json.loads(shoal("runs", "show", str(first["run"]), "--json"))
    assert [m["epoch"] for m in shown["epoch_metrics"]] == [1, 2, 3]


def test_train_on_an_exported_imagefolder(small_env, tmp_path) -> None:
    root = tmp_path / "export"
    for i, photo in enumerate(sorted(small_env.image_dir.rglob("*.jpg"))[:8]):
        for split in ("train", "val"):
            target = root / split / f"class{i % 2}" / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, target)
    result = cli_train(str(root))
    assert result["state"] == "succeeded"
    shown = json.loads(shoal("runs", "show", str(result["run"]), "--json"))
    assert shown["dataset"] == str(root.resolve())


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise AssertionError("headless Chromium is needed: apt-get install -y chromium")


def test_report_renders_in_headless_chromium(small_env, tmp_path) -> None:
    from tests.trainer.test_training import new_run
    from trainer.train import train_run

    run = train_run(new_run(epochs=2))
    out = tmp_path / "report.html"
    shoal("report", "--run", str(run.id), "--out", str(out))
    html = out.read_text()
    assert "<script" not in html and 'src="http' not in html  # self-contained
    assert html.count("data:image/png;base64,") == 2  # curves and confusion matrix

    browser = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--window-size=1100,1600"]
    dom = subprocess.run([*browser, "--dump-dom", out.as_uri()], capture_output=True,
                         text=True, timeout=90, check=True).stdout
    assert f"Run {run.id}: resnet34 on small-v1" in dom
    for label in ("baim", "hilsa", "koi"):
        assert f"<td>{label}</td>" in dom
    assert dom.count('class="sample"') == 6  # every validation photo, with its prediction
    shot = tmp_path / "report.png"
    subprocess.run([*browser, f"--screenshot={shot}", out.as_uri()], capture_output=True,
                   timeout=90, check=True)
    image = Image.open(shot).convert("L")
    assert image.size == (1100, 1600)
    low, high = image.getextrema()
    assert high - low > 100  # text and plots, not a blank page
    assert ImageStat.Stat(image).mean[0] < 250

"""Predictions as a job: a run scores catalog images through its feature cache, keeps the top
k, and the rows of every run are kept apart (keyed by run)."""

from __future__ import annotations

import json

import pytest
import torch
from sqlalchemy import select
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.models import DatasetItem, Image, ImagePrediction, Job
from pipeline.cli import app
from pipeline.jobs.submit import submit
from tests.trainer.conftest import small_env  # noqa: F401
from tests.trainer.test_training import new_run
from trainer.data import Record
from trainer.features import resolve_precision
from trainer.predict import Predictor
from trainer.train import train_run


def predictions(session, run_id: int) -> dict[int, ImagePrediction]:
    return {p.image_id: p for p in session.scalars(
        select(ImagePrediction).where(ImagePrediction.run_id == run_id))}


def test_a_predict_job_writes_top_k_through_the_cache_and_runs_stay_apart(small_env):  # noqa: F811
    first = train_run(new_run(epochs=1)).id
    job = submit("predict", {"run": first, "top_k": 2})
    with session_scope() as session:
        assert session.get_one(Job, job.id).state == "succeeded", job.error
        rows = predictions(session, first)
        images = session.scalars(select(Image)).all()
        assert set(rows) == {i.id for i in images}
        for row in rows.values():
            assert len(row.top_k) == 2 and row.top_k[0]["label"] == row.label
            assert row.top_k[0]["probability"] >= row.top_k[1]["probability"]
            assert row.confidence == row.top_k[0]["probability"]
        # the cached path gives what the model gives on the image itself
        predictor = Predictor.from_run(session, first)
        image = images[0]
        record = Record(small_env.image_dir / image.path, image.sha256, -1, image.id)
        direct = predictor.probabilities([record])[0]
        assert rows[image.id].label == predictor.classes[int(direct.argmax())]
        # the cache holds bf16 features where the CPU has native bf16 (AVX-512 BF16, AMX):
        # then the two paths agree to bf16's precision, else to fp32's
        tolerance = 1e-2 if resolve_precision("auto") == "bf16" else 1e-4
        assert rows[image.id].confidence == pytest.approx(float(direct.max()), abs=tolerance)
        before = {i: (r.label, r.confidence, r.top_k) for i, r in rows.items()}

    second = train_run(new_run(epochs=2, seed=1)).id
    job = submit("predict", {"run": second, "unscored": True, "status": ["downloaded",
                                                                          "unique",
                                                                          "approved"]})
    with session_scope() as session:
        assert session.get_one(Job, job.id).result["predicted"] == len(before)
        assert {i: (r.label, r.confidence, r.top_k)
                for i, r in predictions(session, first).items()} == before
        assert set(predictions(session, second)) == set(before)
    again = submit("predict", {"run": second, "unscored": True})
    assert again.result["selected"] == 0  # everything is scored by that run now


def test_the_cli_scores_one_dataset_version_and_says_what_it_did(small_env):  # noqa: F811
    run = train_run(new_run(epochs=1)).id
    result = CliRunner().invoke(app, ["curate", "predict", "--run", str(run), "--version",
                                      "small-v1", "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    with session_scope() as session:
        n = len(session.scalars(select(DatasetItem)).all())
        assert out["result"]["selected"] == n == out["result"]["predicted"]
        assert all(len(p.top_k) == 3 for p in predictions(session, run).values())
    bad = CliRunner().invoke(app, ["curate", "predict", "--run", str(run), "--status", "bogus"])
    assert bad.exit_code != 0 and "unknown status bogus" in bad.output
    assert "Traceback" not in bad.output


def test_a_frozen_run_predicts_a_batch_like_one_image_at_a_time(small_env):  # noqa: F811
    run = train_run(new_run(epochs=1)).id
    with session_scope() as session:
        predictor = Predictor.from_run(session, run)
        from trainer.predict import cached_probabilities

        images = session.scalars(select(Image).limit(4)).all()
        records = [Record(small_env.image_dir / i.path, i.sha256, -1, i.id) for i in images]
        together = cached_probabilities(session, run, predictor, records)
        alone = torch.cat([cached_probabilities(session, run, predictor, [r]) for r in records])
    torch.testing.assert_close(together, alone)


def test_predict_follows_train_in_one_chain(small_env):  # noqa: F811
    from pipeline.jobs.submit import submit_chain
    from tests.trainer.conftest import FAST

    train, predict = submit_chain([
        ("train", {"dataset": "small-v1", "arch": "resnet34", "weights": "none",
                   "hyper": dict(FAST)}),
        ("predict", {"status": ["unique", "approved", "downloaded"]}),
    ])
    assert train.state == predict.state == "succeeded", (train.error, predict.error)
    assert predict.result["run"] == train.result["run_id"]
    with session_scope() as session:
        assert len(predictions(session, train.result["run_id"])) == predict.result["predicted"] > 0

"""Training through the job queue: in this process without a broker, and on a real Celery
worker of the train queue; either way the run's metrics come back into the catalog."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from catalog.db import session_scope
from catalog.models import ClassMetric, EpochMetric, Job, JobState, TrainingRun
from pipeline.cli import app
from tests.pipeline.conftest import wait_until
from tests.trainer.conftest import FAST
from tests.trainer.test_cli_report import last_json

runner = CliRunner()
ARGS = ["train", "--dataset", "small-v1", "--arch", "resnet34", "--weights", "none",
        "--epochs", "2", "--image-size", str(FAST["image_size"]), "--batch-size", "8", "--json"]


def queued(*extra: str) -> list[dict]:
    result = runner.invoke(app, [*ARGS, *extra])
    assert result.exit_code == 0, result.output
    return last_json(result.output)


def written_back(run_id: int, job_id: int) -> None:
    with session_scope() as session:
        run = session.get(TrainingRun, run_id)
        job = session.get(Job, job_id)
        epochs = session.scalar(select(func.count()).where(EpochMetric.run_id == run_id))
        classes = session.scalar(select(func.count()).where(ClassMetric.run_id == run_id))
    assert job.state == JobState.SUCCEEDED, job.error
    assert run.state == JobState.SUCCEEDED and run.job_id == job.id
    assert job.result["run_id"] == run_id
    assert job.result["best_val_accuracy"] == run.best_val_accuracy is not None
    assert (epochs, classes) == (2, 3)


def test_queued_sweep_runs_in_process_without_a_broker(small_env) -> None:
    results = queued("--lr", "1e-4,1e-3", "--queue")
    assert [r["queued"] for r in results] == [True, True]
    for r in results:
        written_back(r["run"], r["job"])
    with session_scope() as session:
        lrs = sorted(r.hyperparams["lr"] for r in session.scalars(select(TrainingRun)))
    assert lrs == [1e-4, 1e-3]


@pytest.mark.celery
@pytest.mark.postgres
@pytest.mark.redis
def test_training_job_on_a_worker_writes_its_metrics_back(small_broker_env, start_worker) -> None:
    start_worker("w-train", queues="train")
    [result] = queued("--queue")
    assert result["job_state"] == JobState.QUEUED

    def finished() -> bool:
        with session_scope() as session:
            return session.get(Job, result["job"]).state in JobState.FINISHED

    wait_until(finished, timeout=240, what="the training job")
    written_back(result["run"], result["job"])

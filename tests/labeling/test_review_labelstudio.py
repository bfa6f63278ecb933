"""Review against a real Label Studio 1.23.2: setup, push, annotate, pull, webhooks, failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from catalog.db import session_scope
from catalog.models import (
    Image,
    ImagePrediction,
    ImageStatus,
    JobState,
    ReviewDecision,
    ReviewTask,
    Species,
    TrainingRun,
)
from labeling import push as push_module
from labeling.client import LabelStudioUnavailable, make_client
from labeling.project import SECRET_HEADER, setup_project
from labeling.pull import pull_annotations
from labeling.push import push_tasks
from labeling.record import Annotators
from labeling.server import free_port
from labeling.status import review_status
from labeling.webhooks import WebhookServer
from tests.labeling.conftest import LabelStudioServer, add_photos, annotate

pytestmark = pytest.mark.labelstudio


def setup(ls: LabelStudioServer, **kwargs: object) -> int:
    with session_scope() as session:
        return setup_project(session, ls.client(), files_root=ls.files_root, **kwargs).project_id


def ls_tasks(ls: LabelStudioServer, project_id: int) -> list:
    return list(ls.client().tasks.list(project=project_id, fields="all", page_size=500))


def task_of(image_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(ReviewTask.ls_task_id).where(ReviewTask.image_id == image_id))


def image(image_id: int) -> Image:
    with session_scope() as session:
        return session.get(Image, image_id)


def test_setup_is_idempotent_and_serves_the_images(review_env, label_studio, fishdata) -> None:
    first = setup(label_studio)
    with session_scope() as session:
        again = setup_project(session, label_studio.client(), files_root=label_studio.files_root)
    assert again.project_id == first and not again.project_created
    assert not again.config_updated and not again.storage_created
    project = label_studio.client().projects.get(first)
    assert "Larimichthys crocea · 大黄鱼" in project.label_config
    assert 'alias="not-a-fish"' in project.label_config and project.expert_instruction

    [image_id] = add_photos(fishdata, {"hairtail": 1})
    with session_scope() as session:
        push_tasks(session, label_studio.client())
    [task] = ls_tasks(label_studio, first)
    served = httpx.get(label_studio.url + task.data["image"],
                       headers={"Authorization": f"Token {label_studio.token}"})
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.content == (label_studio.files_root / "images" / image(image_id).path
                              ).read_bytes()


def test_push_with_predictions_never_twice(review_env, label_studio, fishdata) -> None:
    project_id = setup(label_studio)
    ids = add_photos(fishdata, {"hairtail": 4, "silver-pomfret": 3})
    with session_scope() as session:
        report = push_tasks(session, label_studio.client(), species="hairtail", batch_size=2)
    assert report.pushed == 4 and report.requests == 2
    with session_scope() as session:
        report = push_tasks(session, label_studio.client(), batch_size=2)
        again = push_tasks(session, label_studio.client())
    assert report.pushed == len(ids) - 4 and again.pushed == again.candidates == 0
    tasks = ls_tasks(label_studio, project_id)
    assert sorted(t.data["image_id"] for t in tasks) == sorted(ids)
    for task in tasks:
        [prediction] = task.predictions
        assert prediction.model_version == "keyword" and prediction.score == 1.0
        assert prediction.result[0]["value"]["choices"] == [task.data["expected"]]
    with session_scope() as session:
        states = session.execute(select(Image.status, func.count()).group_by(Image.status))
        assert dict(states.all()) == {ImageStatus.IN_REVIEW: len(ids)}


def test_model_predictions_and_uncertainty_order(review_env, label_studio, fishdata) -> None:
    project_id = setup(label_studio)
    ids = add_photos(fishdata, {"hairtail": 4})
    with session_scope() as session:
        run = TrainingRun(arch="resnet34", state=JobState.SUCCEEDED)
        session.add(run)
        session.flush()
        for image_id, confidence in zip(ids, (0.9, 0.3, 0.6), strict=False):
            session.add(ImagePrediction(image_id=image_id, run_id=run.id, label="chub-mackerel",
                                        confidence=confidence))
        run_id = run.id
    with session_scope() as session:
        first = push_tasks(session, label_studio.client(), order="uncertainty", limit=2)
    assert first.sources == {"run": 2}
    with session_scope() as session:
        pushed = session.execute(select(ReviewTask.image_id, ReviewTask.prediction_score,
                                        ReviewTask.prediction_source)).all()
    source = f"run-{run_id}"
    assert sorted(pushed) == sorted([(ids[1], 0.3, source), (ids[2], 0.6, source)])
    task = next(t for t in ls_tasks(label_studio, project_id) if t.data["image_id"] == ids[1])
    assert task.predictions[0].result[0]["value"]["choices"] == ["chub-mackerel"]
    assert task.predictions[0].score == 0.3
    with session_scope() as session:
        rest = push_tasks(session, label_studio.client(), order="uncertainty")
    assert rest.pushed == 2 and rest.sources == {"run": 1, "keyword": 1}


def test_interrupted_push_is_reconciled_without_second_tasks(
    review_env, label_studio, fishdata, monkeypatch
) -> None:
    project_id = setup(label_studio)
    ids = add_photos(fishdata, {"hairtail": 5})

    def die(*_args: object) -> None:
        raise KeyboardInterrupt("killed between Label Studio creating tasks and the catalog")

    monkeypatch.setattr(push_module, "record", die)
    with session_scope() as session, pytest.raises(KeyboardInterrupt):
        push_tasks(session, label_studio.client(), limit=3)
    monkeypatch.undo()
    with session_scope() as session:
        assert set(session.scalars(select(ReviewTask.state))) == {"pushing"}
        assert session.scalar(select(func.count()).where(
            Image.status == ImageStatus.UNIQUE)) == len(ids)
    assert len(ls_tasks(label_studio, project_id)) == 3

    with session_scope() as session:
        report = push_tasks(session, label_studio.client())
    assert report.reconciled == 3 and report.pushed == len(ids) - 3
    tasks = ls_tasks(label_studio, project_id)
    assert sorted(t.data["image_id"] for t in tasks) == sorted(ids)
    with session_scope() as session:
        recorded = dict(session.execute(select(ReviewTask.image_id, ReviewTask.ls_task_id)).all())
    assert recorded == {t.data["image_id"]: t.id for t in tasks}


def test_annotations_resolve_by_majority_update_and_delete(
    review_env, label_studio, fishdata
) -> None:
    setup(label_studio, overlap=3)
    a, b, c, d, e = add_photos(fishdata, {"hairtail": 5})
    with session_scope() as session:
        push_tasks(session, label_studio.client())
    ann = [label_studio.annotator(f"fisher{i}@shoal.test") for i in (1, 2, 3)]
    annotate(ann[0], task_of(a), "chub-mackerel")  # one vote, another species: relabelled
    annotate(ann[0], task_of(b), "not-a-fish")
    annotate(ann[1], task_of(b), "bad-image")
    annotate(ann[2], task_of(b), "hairtail")  # 2 of 3 keep it out: rejected
    annotate(ann[0], task_of(c), "hairtail")
    tie = annotate(ann[1], task_of(c), "silver-pomfret")  # 1:1, pending
    annotate(ann[2], task_of(d), "unsure")
    annotate(ann[1], task_of(e), "hairtail")

    with session_scope() as session:
        report = pull_annotations(session, label_studio.client())
    assert report.annotations == 8 and report.decisions.changed == 5
    with session_scope() as session:
        decisions = {r.image_id: r for r in session.scalars(select(ReviewDecision))}
        slugs = dict(session.execute(select(Species.id, Species.slug)).all())
    assert (decisions[a].outcome, decisions[a].label, decisions[a].relabelled) == (
        "approved", "chub-mackerel", True)
    assert image(a).status == ImageStatus.APPROVED
    assert slugs[image(a).label_species_id] == "chub-mackerel"
    assert decisions[b].outcome == "rejected"
    assert decisions[b].agreement == pytest.approx(2 / 3, abs=1e-3)
    assert sorted(decisions[b].annotators) == [f"fisher{i}@shoal.test" for i in (1, 2, 3)]
    assert image(b).status == ImageStatus.REJECTED
    assert decisions[c].outcome == "pending" and image(c).status == ImageStatus.IN_REVIEW
    assert decisions[d].outcome == "pending"
    assert (decisions[e].outcome, decisions[e].relabelled) == ("approved", False)

    ann[1].annotations.update(tie, result=annotate_result("hairtail"))
    ann[0].annotations.delete(next(x.id for x in ann[0].annotations.list(id=task_of(a))))
    with session_scope() as session:
        report = pull_annotations(session, label_studio.client())
        assert report.deleted == 1 and report.decisions.changed == 2
        assert pull_annotations(session, label_studio.client()).decisions.changed == 0
        history = session.scalars(select(ReviewDecision.outcome).where(
            ReviewDecision.image_id == a).order_by(ReviewDecision.id)).all()
        status = review_status(session)
    assert history == ["approved", "pending"] and image(a).label_species_id is None
    assert image(c).status == ImageStatus.APPROVED
    [hairtail] = status["species"]
    assert hairtail == {"species": "hairtail", "pushed": 5, "annotated": 4, "approved": 2,
                        "auto_accepted": 0, "rejected": 1, "relabelled": 0, "pending": 2}
    by_name = {r["annotator"]: r for r in status["annotators"]}
    assert by_name["fisher3@shoal.test"]["compared"] == 1
    assert by_name["fisher3@shoal.test"]["agreement"] == 0.0
    assert by_name["fisher2@shoal.test"]["agreement"] == 1.0


def annotate_result(choice: str) -> list:
    from labeling.config import choice_result

    return choice_result(choice)


@pytest.fixture
def webhook_server(review_env) -> Iterator[WebhookServer]:
    server = WebhookServer(("127.0.0.1", free_port()), "test-secret", session_scope,
                           Annotators(make_client(review_env.review.label_studio_url,
                                                  review_env.review.label_studio_token
                                                  .get_secret_value())))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def wait_for(predicate, what: str, tries: int = 100) -> None:
    import time

    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def test_webhooks_feed_the_resolver(review_env, label_studio, fishdata, webhook_server) -> None:
    with session_scope() as session:
        report = setup_project(session, label_studio.client(), files_root=label_studio.files_root,
                               webhook_url=webhook_server.url, webhook_secret="test-secret")
    assert report.webhook_created
    [a] = add_photos(fishdata, {"hairtail": 1})
    with session_scope() as session:
        push_tasks(session, label_studio.client())
    person = label_studio.annotator("hooked@shoal.test")
    annotation = annotate(person, task_of(a), "silver-pomfret")
    wait_for(lambda: image(a).status == ImageStatus.APPROVED, "approval by webhook")
    person.annotations.update(annotation, result=annotate_result("not-a-fish"))
    wait_for(lambda: image(a).status == ImageStatus.REJECTED, "rejection by webhook")
    person.annotations.delete(annotation)
    wait_for(lambda: image(a).status == ImageStatus.IN_REVIEW, "deletion by webhook")
    with session_scope() as session:
        decisions = session.scalars(select(ReviewDecision).order_by(ReviewDecision.id)).all()
        assert [d.source for d in decisions] == ["webhook"] * 3
        assert decisions[0].annotators == ["hooked@shoal.test"] and decisions[0].relabelled
        assert pull_annotations(session, label_studio.client()).decisions.changed == 0

    wrong = httpx.post(webhook_server.url, json={"action": "ANNOTATIONS_DELETED"},
                       headers={SECRET_HEADER: "guess"})
    assert wrong.status_code == 401


def test_label_studio_down_or_slow_leaves_the_catalog_whole(
    review_env, label_studio, fishdata
) -> None:
    setup(label_studio)
    ids = add_photos(fishdata, {"hairtail": 2})
    down = make_client(f"http://127.0.0.1:{free_port()}", "token", retries=1)
    with session_scope() as session, pytest.raises(LabelStudioUnavailable, match="not reachable"):
        push_tasks(session, down, project_id=1)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ReviewTask)) == 0
        assert set(session.scalars(select(Image.status))) == {ImageStatus.UNIQUE}

    with silent_server() as url:  # accepts connections, never answers
        slow = make_client(url, "token", timeout=0.5, retries=0)
        with session_scope() as session, pytest.raises(LabelStudioUnavailable, match="timed out"):
            push_tasks(session, slow, project_id=1)
    with session_scope() as session:  # outcome unknown: journalled, not in review
        assert set(session.scalars(select(ReviewTask.state))) == {"pushing"}
        assert set(session.scalars(select(Image.status))) == {ImageStatus.UNIQUE}
        report = push_tasks(session, label_studio.client())
    assert report.requeued == 2 and report.pushed == 2
    assert {image(i).status for i in ids} == {ImageStatus.IN_REVIEW}


def silent_server():
    import contextlib
    import socket

    @contextlib.contextmanager
    def serve() -> Iterator[str]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            sock.close()

    return serve()


def test_cli_reports_label_studio_down(review_env, monkeypatch) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.setenv("SHOAL_LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
    from catalog.settings import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["review", "status", "--json"])
    assert result.exit_code == 0
    result = CliRunner().invoke(app, ["review", "pull"])
    assert result.exit_code == 3 and "not reachable" in result.output

"""The resolver without Label Studio: the rule, and what it writes (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import Image, ImageStatus, ReviewDecision, ReviewTask, Species
from labeling.config import choice_result
from labeling.record import Annotators, SeenAnnotation, record_annotations
from labeling.resolve import Decision, Vote, decide, resolve_tasks
from labeling.status import review_status
from labeling.webhooks import handle_event

KNOWN = {"hairtail", "chub-mackerel", "silver-pomfret"}


def votes(*choices: str) -> list[Vote]:
    return [Vote(f"a{i}", c) for i, c in enumerate(choices)]


@pytest.mark.parametrize(("choices", "expected"), [
    ((), Decision("pending")),
    (("hairtail",), Decision("approved", "hairtail", False, 1.0, ("a0",))),
    (("chub-mackerel",), Decision("approved", "chub-mackerel", True, 1.0, ("a0",))),
    (("not-a-fish",), Decision("rejected", "not-a-fish", False, 1.0, ("a0",))),
    (("bad-image",), Decision("rejected", "bad-image", False, 1.0, ("a0",))),
    (("unsure",), Decision("pending", None, False, 1.0, ("a0",))),
    (("hairtail", "hairtail", "chub-mackerel"),
     Decision("approved", "hairtail", False, 0.6667, ("a0", "a1", "a2"))),
    (("hairtail", "chub-mackerel"), Decision("pending", None, False, 0.5, ("a0", "a1"))),
    (("bad-image", "not-a-fish", "hairtail"),
     Decision("rejected", "not-a-fish", False, 0.6667, ("a0", "a1", "a2"))),
    (("bad-image", "bad-image", "not-a-fish"),
     Decision("rejected", "bad-image", False, 1.0, ("a0", "a1", "a2"))),
    (("unsure", "unsure", "hairtail"), Decision("pending", None, False, 0.6667,
                                                ("a0", "a1", "a2"))),
    (("gone-species",), Decision("pending", None, False, 1.0, ("a0",))),
])
def test_decide(choices: tuple[str, ...], expected: Decision) -> None:
    assert decide(votes(*choices), "hairtail", KNOWN) == expected


def make_task(session, slug: str = "hairtail", ls_task_id: int = 101) -> tuple[int, int]:
    species_id = session.scalar(select(Species.id).where(Species.slug == slug))
    image = Image(sha256=f"{ls_task_id:064d}", raw_sha256="r", status=ImageStatus.IN_REVIEW,
                  expected_species_id=species_id, path="x.jpg")
    session.add(image)
    session.flush()
    task = ReviewTask(image_id=image.id, ls_project_id=1, ls_task_id=ls_task_id)
    session.add(task)
    session.flush()
    return image.id, task.id


def seen(ann_id: int, who: str, choice: str | None, task: int = 101) -> SeenAnnotation:
    return SeenAnnotation(ann_id, task, who, choice)


def test_decisions_are_written_only_when_they_change(shoal_env) -> None:
    with session_scope() as session:
        image_id, task_id = make_task(session)
        affected = record_annotations(session, [seen(1, "ann", "silver-pomfret"),
                                                seen(2, "bob", "silver-pomfret"),
                                                seen(3, "cy", None)], "pull")
        assert affected == {task_id}
        assert resolve_tasks(session, affected, "pull").changed == 1
        assert record_annotations(session, [seen(1, "ann", "silver-pomfret")], "pull") == set()
        assert resolve_tasks(session, [task_id], "pull").changed == 0
        image = session.get(Image, image_id)
        decision = session.scalars(select(ReviewDecision)).one()
        task = session.get(ReviewTask, task_id)
        pomfret = session.scalar(select(Species.id).where(Species.slug == "silver-pomfret"))
    assert (image.status, image.label_species_id) == (ImageStatus.APPROVED, pomfret)
    assert (decision.outcome, decision.relabelled, decision.agreement) == ("approved", True, 1.0)
    assert decision.annotators == ["ann", "bob"] and decision.n_annotations == 2
    assert (task.state, task.decided_label) == ("approved", "silver-pomfret")


def test_webhook_events_create_update_delete(shoal_env) -> None:
    users = Annotators(None)
    with session_scope() as session:
        image_id, task_id = make_task(session)

        def event(action: str, **body: object) -> dict:
            return handle_event(session, {"action": action, **body}, users)

        def ann(ann_id: int, choice: str, who: int) -> dict:
            return {"id": ann_id, "task": 101, "result": choice_result(choice),
                    "was_cancelled": False, "completed_by": {"id": who, "email": f"u{who}@x"}}

        event("ANNOTATION_CREATED", annotation=ann(7, "not-a-fish", 1), task={"id": 101})
        assert session.get(Image, image_id).status == ImageStatus.REJECTED
        assert session.get(Image, image_id).reject_reason == "review_not_a_fish"
        event("ANNOTATIONS_CREATED", annotation=[ann(8, "hairtail", 2), ann(9, "hairtail", 3)])
        assert session.get(Image, image_id).status == ImageStatus.APPROVED
        event("ANNOTATION_UPDATED", annotation=ann(8, "not-a-fish", 2), task={"id": 101})
        assert session.get(Image, image_id).status == ImageStatus.REJECTED
        result = event("ANNOTATIONS_DELETED", annotations=[{"id": 7}, {"id": 8}])
        assert result["decisions"]["approved"] == 1
        assert event("PROJECT_UPDATED")["ignored"]
        history = session.execute(select(ReviewDecision.outcome, ReviewDecision.source)
                                  .order_by(ReviewDecision.id)).all()
        status = review_status(session)
    assert [h[0] for h in history] == ["rejected", "approved", "rejected", "approved"]
    assert {h[1] for h in history} == {"webhook"}
    assert status["species"] == [{"species": "hairtail", "pushed": 1, "annotated": 1,
                                  "approved": 1, "auto_accepted": 0, "rejected": 0,
                                  "relabelled": 0, "pending": 0}]
    assert [a["annotator"] for a in status["annotators"]] == ["u3@x"]


def test_a_decided_image_that_left_review_keeps_its_status(sqlite_env) -> None:
    with session_scope() as session:
        image_id, task_id = make_task(session)
        session.get(Image, image_id).status = ImageStatus.DUPLICATE
        record_annotations(session, [seen(1, "ann", "hairtail")], "pull")
        assert resolve_tasks(session, [task_id], "pull").changed == 1
        assert session.get(Image, image_id).status == ImageStatus.DUPLICATE

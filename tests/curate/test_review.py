"""Review after curation: the model's approvals (never of what a person decided or of a
conflict), and the suspects first in a real Label Studio, pre-annotated."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import (
    Annotation,
    DuplicateGroup,
    Image,
    ImageStatus,
    ImageSuspicion,
    ReviewDecision,
    ReviewTask,
)
from labeling.autoaccept import auto_accept, eligible
from labeling.config import choice_of
from labeling.resolve import resolve_tasks
from labeling.status import review_status
from pipeline.curate.passes import curate
from pipeline.datasets.approve import approve_by_keyword
from pipeline.dedupe.grouping import link_pairs
from tests.curate.conftest import FAST


def reject_by_a_person(session, image_id: int) -> None:
    """What a push and a pull write when an annotator says "not a fish", then the real
    resolver."""
    task = ReviewTask(image_id=image_id, ls_project_id=1, ls_task_id=90_000 + image_id,
                      state="pending")
    session.add(task)
    session.get(Image, image_id).status = ImageStatus.IN_REVIEW
    session.flush()
    session.add(Annotation(review_task_id=task.id, ls_annotation_id=80_000 + image_id,
                           annotator="person@example.org", choice="not-a-fish", source="pull"))
    session.flush()
    resolve_tasks(session, [task.id], "pull")


def test_auto_accept_never_approves_a_rejected_image_or_a_conflict(catalog):
    with session_scope() as session:
        run = curate(session, FAST).run_id
        sure = eligible(session, run, 0.01)
        assert len(sure) >= 4
        rejected, beside_rejected, in_conflict = sure[0][0], sure[1][0], sure[2][0]
        reject_by_a_person(session, rejected)
        assert session.get(Image, rejected).status == ImageStatus.REJECTED
        other_species = next(i for i, _, slug, _ in sure if slug != sure[2][2])
        link_pairs(session, [(in_conflict, other_species)])
        group = session.get(DuplicateGroup, session.get(Image, in_conflict).duplicate_group_id)
        assert group.conflict
        same_species = next(i for i, _, slug, _ in sure[3:] if slug == sure[1][2]
                            and i not in (other_species,))
        link_pairs(session, [(rejected, beside_rejected), (rejected, same_species)])

        report = auto_accept(session, 0.01, run)
        assert report.approved >= 1
        for image_id in (rejected, beside_rejected, same_species, in_conflict, other_species):
            assert session.get(Image, image_id).status != ImageStatus.APPROVED, image_id
        assert session.get(Image, rejected).status == ImageStatus.REJECTED

        decisions = session.scalars(select(ReviewDecision).where(
            ReviewDecision.source == "model")).all()
        assert len(decisions) == report.approved
        for d in decisions:
            image = session.get(Image, d.image_id)
            assert image.status == ImageStatus.APPROVED
            assert image.label_species_id == image.expected_species_id
            assert d.curation_run_id == run and d.model_probability >= 0.01
            row = session.scalar(select(ImageSuspicion).where(
                ImageSuspicion.run_id == run, ImageSuspicion.image_id == d.image_id))
            assert not row.suspect and d.model_probability == row.suggested_probability
        status = review_status(session)
        assert status["auto_accepted"] == report.approved
        assert {d["image_id"] for d in status["model_decisions"]} == {
            d.image_id for d in decisions}
        assert sum(r["auto_accepted"] for r in status["species"]) == report.approved
        # a second pass approves nothing more: everything it could take is taken
        assert auto_accept(session, 0.01, run).approved == 0


def test_without_people_the_suspects_wait_and_what_curation_cleared_is_taken(catalog):
    with session_scope() as session:
        run = curate(session, FAST).run_id
        rows = session.scalars(select(ImageSuspicion).where(ImageSuspicion.run_id == run)).all()
        suspects = {r.image_id for r in rows if r.suspect}
        cleared = sorted(r.image_id for r in rows if not r.suspect)
        assert suspects and len(cleared) > 2
        unseen = cleared.pop()  # as if crawled after the run: it has no row of the run
        session.query(ImageSuspicion).filter_by(run_id=run, image_id=unseen).delete()
        conflicted = set(session.scalars(select(Image.id).join(
            DuplicateGroup, DuplicateGroup.id == Image.duplicate_group_id)
            .where(DuplicateGroup.conflict.is_(True))))
        by_model = auto_accept(session, 0.5, run).approved
        by_keyword = approve_by_keyword(session, screened_by=run)
        approved = set(session.scalars(select(Image.id).where(
            Image.status == ImageStatus.APPROVED)))
        assert len(approved) == by_model + by_keyword and by_keyword > 0
        assert approved == set(cleared) - conflicted
        assert not approved & suspects and unseen not in approved
        for image_id in approved:  # each under the species it was crawled for
            image = session.get(Image, image_id)
            assert image.label_species_id == image.expected_species_id
        assert approve_by_keyword(session, screened_by=run) == 0


def test_auto_accept_refuses_a_threshold_outside_zero_to_one(catalog):
    with session_scope() as session, pytest.raises(ValueError, match="in \\(0, 1\\]"):
        auto_accept(session, 0.0)


@pytest.mark.labelstudio
def test_label_studio_gets_the_suspects_first_with_the_suggestion(review_catalog,
                                                                  label_studio):
    from labeling.project import setup_project
    from labeling.push import push_tasks

    client = label_studio.client()
    with session_scope() as session:
        project = setup_project(session, client, files_root=label_studio.files_root).project_id
        run = curate(session, FAST).run_id
        rows = {s.image_id: s for s in session.scalars(
            select(ImageSuspicion).where(ImageSuspicion.run_id == run))}
        unique = set(session.scalars(select(Image.id).where(
            Image.status == ImageStatus.UNIQUE)))
        report = push_tasks(session, client)
        assert report.order == "suspicion"
    expected = sorted((i for i in rows if i in unique),
                      key=lambda i: (not rows[i].suspect, -rows[i].score, i))
    suspects = [i for i in expected if rows[i].suspect]
    assert suspects, "the pass found no suspect in the catalog"
    tasks = sorted(client.tasks.list(project=project, fields="all", page_size=500),
                   key=lambda t: t.id)
    assert [int(t.data["image_id"]) for t in tasks] == expected
    for task in tasks[:len(suspects)]:
        row = rows[int(task.data["image_id"])]
        prediction = task.predictions[0]
        model_version = (prediction["model_version"] if isinstance(prediction, dict)
                         else prediction.model_version)
        result = prediction["result"] if isinstance(prediction, dict) else prediction.result
        assert model_version == f"curate-{run}"
        assert choice_of(result) == row.suggested_label

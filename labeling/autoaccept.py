"""`review push --auto-accept P`: the model approves what it is sure of, openly.

An image is approved without a person when its crawl keyword's species is the curation run's
out-of-fold top species with probability at least P and the run found nothing else wrong with
it. Each such approval is a review task in state ``approved`` with no Label Studio task and a
``review_decisions`` row with source ``model``, the curation run and the probability, so
`review status` lists it and nothing about it is silent.

Never approved by the model: an image a person has decided (it has a review task: pushed,
rejected or approved), a member of a conflicted duplicate group (two species claim the photo),
or a member of a group in which a person rejected an image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, insert, select, update
from sqlalchemy.orm import Session, aliased

from catalog.models import (
    CurationRun,
    DuplicateGroup,
    Image,
    ImageStatus,
    ImageSuspicion,
    ReviewDecision,
    ReviewTask,
    Species,
    utcnow,
)

MODEL = "model"  # review_decisions.source of a decision the model took
APPROVED = "approved"


@dataclass
class AutoAcceptReport:
    threshold: float
    curation_run_id: int | None
    approved: int = 0
    by_species: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "curation_run_id": self.curation_run_id,
                "approved": self.approved, "by_species": self.by_species}


def latest_curation_run(session: Session) -> int | None:
    return session.scalar(
        select(CurationRun.id).where(exists().where(ImageSuspicion.run_id == CurationRun.id))
        .order_by(CurationRun.id.desc()).limit(1))


def eligible(session: Session, run_id: int, threshold: float) -> list[tuple[int, int, str, float]]:
    """(image id, species id, slug, probability) the model may approve."""
    other = aliased(Image)
    rejected_in_group = exists().where(other.duplicate_group_id == Image.duplicate_group_id,
                                       other.status == ImageStatus.REJECTED)
    conflicted = exists().where(DuplicateGroup.id == Image.duplicate_group_id,
                                DuplicateGroup.conflict.is_(True))
    query = (
        select(Image.id, Species.id, Species.slug, ImageSuspicion.suggested_probability)
        .join(ImageSuspicion, ImageSuspicion.image_id == Image.id)
        .join(Species, Species.id == Image.expected_species_id)
        .where(ImageSuspicion.run_id == run_id, ImageSuspicion.suspect.is_(False),
               ImageSuspicion.suggested_label == Species.slug,
               ImageSuspicion.given_label == Species.slug,
               ImageSuspicion.suggested_probability >= threshold,
               Image.status == ImageStatus.UNIQUE,
               ~exists().where(ReviewTask.image_id == Image.id),
               ~conflicted, ~rejected_in_group)
        .order_by(Image.id)
    )
    return [(i, s, slug, float(p)) for i, s, slug, p in session.execute(query)]


def auto_accept(session: Session, threshold: float, run_id: int | None = None
                ) -> AutoAcceptReport:
    if not 0 < threshold <= 1:
        raise ValueError(f"the auto-accept probability must be in (0, 1], not {threshold}")
    run_id = run_id or latest_curation_run(session)
    report = AutoAcceptReport(threshold, run_id)
    if run_id is None:
        return report
    now = utcnow()
    chosen = eligible(session, run_id, threshold)
    if not chosen:
        return report
    source = f"curate-{run_id}"
    session.execute(insert(ReviewTask), [
        {"image_id": i, "prediction_label": slug, "prediction_score": p,
         "prediction_source": source, "state": APPROVED, "decided_label": slug,
         "pushed_at": now, "updated_at": now} for i, _, slug, p in chosen])
    task_of = dict(session.execute(select(ReviewTask.image_id, ReviewTask.id).where(
        ReviewTask.image_id.in_([c[0] for c in chosen]))).all())
    session.execute(insert(ReviewDecision), [
        {"image_id": i, "review_task_id": task_of[i], "outcome": APPROVED, "label": slug,
         "relabelled": False, "n_annotations": 0, "annotators": [], "source": MODEL,
         "curation_run_id": run_id, "model_probability": p, "decided_at": now}
        for i, _, slug, p in chosen])
    session.execute(update(Image), [
        {"id": i, "status": ImageStatus.APPROVED, "label_species_id": species_id,
         "updated_at": now} for i, species_id, _, _ in chosen])
    report.approved = len(chosen)
    for _, _, slug, _ in chosen:
        report.by_species[slug] = report.by_species.get(slug, 0) + 1
    session.flush()
    return report


def model_decisions(session: Session) -> list[dict[str, Any]]:
    """Every approval the model made, for `review status`."""
    rows = session.execute(
        select(ReviewDecision.image_id, ReviewDecision.label, ReviewDecision.curation_run_id,
               ReviewDecision.model_probability, ReviewDecision.decided_at)
        .where(ReviewDecision.source == MODEL).order_by(ReviewDecision.id))
    return [{"image_id": i, "label": label, "curation_run": run, "probability": p,
             "decided_at": when} for i, label, run, p, when in rows]

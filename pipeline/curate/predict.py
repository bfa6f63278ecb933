"""`shoal curate predict`: which catalog images a run scores (``trainer.predict`` scores them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from catalog.dataset_versions import find_version
from catalog.models import DatasetItem, Image, ImagePrediction, ImageStatus, Species
from catalog.species import UnknownSpecies
from pipeline.errors import UsageError


@dataclass
class PredictSelection:
    run_id: int
    statuses: list[str] = field(default_factory=list)  # empty: every stored image
    species: list[str] = field(default_factory=list)
    version: str | None = None
    unscored: bool = False  # only images this run has not scored yet

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "status": self.statuses, "species": self.species,
                "version": self.version, "unscored": self.unscored}


def select_images(session: Session, sel: PredictSelection) -> list[int]:
    bad = sorted(set(sel.statuses) - set(ImageStatus.ALL))
    if bad:
        raise UsageError(f"unknown status {', '.join(bad)}; one of {', '.join(ImageStatus.ALL)}")
    query = select(Image.id).where(Image.path.is_not(None),
                                   Image.status != ImageStatus.INVALID).order_by(Image.id)
    if sel.statuses:
        query = query.where(Image.status.in_(sel.statuses))
    if sel.species:
        known = dict(session.execute(select(Species.slug, Species.id)
                                     .where(Species.slug.in_(sel.species))).all())
        missing = sorted(set(sel.species) - set(known))
        if missing:
            raise UnknownSpecies(f"unknown species: {', '.join(missing)}")
        query = query.where(Image.expected_species_id.in_(list(known.values())))
    if sel.version is not None:
        version = find_version(session, sel.version)
        if version is None:
            raise UsageError(f"no dataset version {sel.version!r}")
        query = query.where(exists().where(DatasetItem.version_id == version.id,
                                           DatasetItem.image_id == Image.id))
    if sel.unscored:
        query = query.where(~exists().where(ImagePrediction.run_id == sel.run_id,
                                            ImagePrediction.image_id == Image.id))
    return list(session.scalars(query))


def predict_catalog(session: Session, sel: PredictSelection, top_k: int = 3) -> dict[str, Any]:
    """Score the selected images with the run's model; returns the report as a dict."""
    from trainer.errors import TrainingError
    from trainer.predict import predict_images

    ids = select_images(session, sel)
    try:
        report = predict_images(session, sel.run_id, ids, top_k=top_k)
    except TrainingError as exc:
        raise UsageError(str(exc)) from exc
    return {**sel.as_dict(), "selected": len(ids), **report.as_dict()}

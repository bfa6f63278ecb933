"""Approval without a person: the label a crawl keyword or a sorted folder gave an image, for
every image or only for those a curation run judged and did not suspect."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from catalog.models import DuplicateGroup, Image, ImageStatus, ImageSuspicion


def approve_by_keyword(session: Session, species_ids: list[int] | None = None,
                       screened_by: int | None = None) -> int:
    """Approve unique images under the species they were found or imported for, leaving out
    members of conflicted duplicate groups (two species claim the same photo). With
    ``screened_by`` (a curation run), only the images that run judged and found nothing wrong
    with: its suspects, and images it never saw, wait for a person."""
    conflicted = select(DuplicateGroup.id).where(DuplicateGroup.conflict.is_(True))
    stmt = (
        update(Image)
        .where(Image.status.in_([ImageStatus.UNIQUE, ImageStatus.IN_REVIEW]),
               Image.expected_species_id.is_not(None),
               (Image.duplicate_group_id.is_(None)) | Image.duplicate_group_id.not_in(conflicted))
        .values(status=ImageStatus.APPROVED, label_species_id=Image.expected_species_id)
        .execution_options(synchronize_session=False)
    )
    if species_ids is not None:
        stmt = stmt.where(Image.expected_species_id.in_(species_ids))
    if screened_by is not None:
        stmt = stmt.where(Image.id.in_(select(ImageSuspicion.image_id).where(
            ImageSuspicion.run_id == screened_by, ImageSuspicion.suspect.is_(False))))
    return session.execute(stmt).rowcount or 0

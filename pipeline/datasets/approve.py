"""Approval without a person: the label a crawl keyword or a sorted folder gave an image."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from catalog.models import DuplicateGroup, Image, ImageStatus


def approve_by_keyword(session: Session, species_ids: list[int] | None = None) -> int:
    """Approve unique images under the species they were found or imported for, leaving out
    members of conflicted duplicate groups (two species claim the same photo)."""
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
    return session.execute(stmt).rowcount or 0

"""What the catalog holds at a glance: images per stage, rejects by reason, URL failures,
duplicate groups. The demo's summary and the dashboard both read it from here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog.models import DuplicateGroup, Image, ImageSource, ImageStatus


def catalog_stats(session: Session) -> dict[str, Any]:
    return {
        "stages": dict(session.execute(
            select(Image.status, func.count()).group_by(Image.status)).all()),
        "rejects": dict(session.execute(
            select(Image.reject_reason, func.count()).where(Image.status == ImageStatus.INVALID)
            .group_by(Image.reject_reason)).all()),
        "url_failures": dict(session.execute(
            select(ImageSource.error, func.count()).where(ImageSource.error.is_not(None))
            .group_by(ImageSource.error)).all()),
        "duplicate_groups": session.scalar(
            select(func.count()).select_from(DuplicateGroup)) or 0,
        "conflicts": session.scalar(
            select(func.count()).select_from(DuplicateGroup).where(DuplicateGroup.conflict)) or 0,
        "species": session.scalar(select(func.count(func.distinct(Image.expected_species_id))))
        or 0,
    }

"""Catalog rows with chosen hashes, so each test states exactly which images are near."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Image, ImageSource, ImageStatus, Species

_serial = itertools.count()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def flip(value: int, n_bits: int, start: int = 0) -> int:
    """``value`` with ``n_bits`` bits flipped, spread over the 64 (distance exactly n_bits)."""
    for i in range(n_bits):
        value ^= 1 << ((start + 7 * i) % 64)
    return value


def species_id(session: Session, slug: str) -> int:
    return session.scalars(select(Species.id).where(Species.slug == slug)).one()


@pytest.fixture
def add_image() -> Callable[..., Image]:
    def add(
        session: Session,
        phash: int | None,
        dhash: int | None = None,
        *,
        size: tuple[int, int] = (800, 600),
        status: str = ImageStatus.DOWNLOADED,
        species: str | None = "hairtail",
        license: str | None = None,
        pixels: str | None = None,
        age: int = 0,
        source_species: list[str] = (),
    ) -> Image:
        n = next(_serial)
        sha = hashlib.sha256(f"image-{n}".encode()).hexdigest()
        img = Image(
            sha256=sha, raw_sha256=sha,
            pixel_sha256=pixels or hashlib.sha256(f"pixels-{n}".encode()).hexdigest(),
            phash=None if phash is None else f"{phash:016x}",
            dhash=None if phash is None else f"{(phash if dhash is None else dhash):016x}",
            width=size[0], height=size[1], format="JPEG", status=status,
            expected_species_id=species_id(session, species) if species else None,
            created_at=T0 + timedelta(minutes=age or n),
        )
        session.add(img)
        session.flush()
        for i, slug in enumerate([species] if species else []):
            session.add(ImageSource(url=f"http://test/{n}/{i}", image_id=img.id, license=license,
                                    species_id=species_id(session, slug)))
        for i, slug in enumerate(source_species):
            session.add(ImageSource(url=f"http://test/{n}/x{i}", image_id=img.id,
                                    license=license, species_id=species_id(session, slug)))
        session.flush()
        return img

    return add


def state(session: Session) -> dict[str, Any]:
    """Everything dedupe writes, comparable between runs."""
    session.expire_all()
    images = session.execute(
        select(Image.id, Image.status, Image.duplicate_group_id, Image.updated_at)
        .order_by(Image.id)).all()
    from catalog.models import DuplicateGroup, DuplicateLink

    groups = session.execute(
        select(DuplicateGroup.id, DuplicateGroup.split_key, DuplicateGroup.size,
               DuplicateGroup.canonical_image_id, DuplicateGroup.conflict,
               DuplicateGroup.species_slugs, DuplicateGroup.updated_at)
        .order_by(DuplicateGroup.id)).all()
    links = session.execute(
        select(DuplicateLink.image_id, DuplicateLink.canonical_id, DuplicateLink.group_id,
               DuplicateLink.distance, DuplicateLink.method)
        .order_by(DuplicateLink.image_id)).all()
    return {"images": [tuple(r) for r in images], "groups": [tuple(r) for r in groups],
            "links": [tuple(r) for r in links]}

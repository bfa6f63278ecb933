"""Real web-20 photos ingested through catalog.ingest, approved, ready to freeze."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select, update

from catalog.db import session_scope
from catalog.imaging import ImageRejected, Limits, NormalisedImage, normalise
from catalog.ingest import SourceInfo, ingest_known, ingest_normalised
from catalog.models import Image, ImageStatus, ReviewDecision, ReviewTask, Species
from catalog.species import SpeciesSpec, get_species, upsert_species
from catalog.store import ImageStore

# web-20 folder -> (slug, latin name); the smallest folders keep the suite fast
FOLDERS = {
    "Mola": ("mola", "Amblypharyngodon mola"),
    "Shing": ("shing", "Heteropneustes fossilis"),
    "Gajar": ("gajar", "Channa marulius"),
    "Loitta": ("loitta", "Harpadon nehereus"),
}
PER_FOLDER = 12
SMALL = Limits(max_long_side=192)


@pytest.fixture(scope="session")
def photos(fishdata: Path) -> dict[str, list[tuple[Path, bytes, NormalisedImage]]]:
    """Each folder's first photos, read and normalised once for the whole session."""
    found: dict[str, list[tuple[Path, bytes, NormalisedImage]]] = {}
    for folder, (slug, _latin) in FOLDERS.items():
        files = sorted((fishdata / "web-20" / folder).iterdir())
        good = []
        for path in files:
            raw = path.read_bytes()
            try:
                good.append((path, raw, normalise(raw, SMALL)))
            except ImageRejected:
                continue
            if len(good) == PER_FOLDER:
                break
        found[slug] = good
    return found


@dataclass
class Catalog:
    """Helpers over the test catalog: ingest photos, approve, relabel, review."""

    url: str
    store: ImageStore
    photos: dict[str, list[tuple[Path, bytes, NormalisedImage]]]
    ids: dict[str, list[int]] = field(default_factory=dict)

    def ingest(self, slug: str, start: int = 0, stop: int | None = None, *,
               site: str = "wikimedia", license: str | None = "CC BY-SA 4.0") -> list[int]:
        new: list[int] = []
        with session_scope(self.url) as session:
            species_id = get_species(session, slug).id
            for path, raw, norm in self.photos[slug][start:stop]:
                source = SourceInfo(url=f"https://{site}.test/{slug}/{path.name}", site=site,
                                    license=license, keyword=slug)
                # the photos were normalised once for the session: the crawler's worker path
                result = ingest_known(session, hashlib.sha256(raw).hexdigest(), source,
                                      species_id) or ingest_normalised(
                    session, self.store, raw, norm, species_id=species_id, source=source)
                if result.outcome == "new":
                    new.append(result.image_id)
        self.ids.setdefault(slug, []).extend(new)
        return new

    def set_status(self, image_ids: list[int], status: str = ImageStatus.APPROVED) -> None:
        with session_scope(self.url) as session:
            session.execute(update(Image).where(Image.id.in_(image_ids)).values(status=status))

    def relabel(self, image_id: int, slug: str) -> None:
        with session_scope(self.url) as session:
            label = session.scalar(select(Species.id).where(Species.slug == slug))
            session.execute(update(Image).where(Image.id == image_id)
                            .values(label_species_id=label))

    def review(self, image_id: int, annotators: list[str]) -> None:
        with session_scope(self.url) as session:
            task = ReviewTask(image_id=image_id, state="done")
            session.add(task)
            session.flush()
            session.add(ReviewDecision(image_id=image_id, review_task_id=task.id,
                                       outcome="approved", annotators=annotators, source="pull"))


@pytest.fixture
def cat(shoal_env, photos) -> Catalog:
    return _catalog(shoal_env, photos)


@pytest.fixture
def sqlite_cat(sqlite_env, photos) -> Catalog:
    return _catalog(sqlite_env, photos)


def _catalog(settings, photos) -> Catalog:
    url = settings.resolved_database_url
    with session_scope(url) as session:
        upsert_species(session, [SpeciesSpec(slug=slug, latin_name=latin)
                                 for slug, latin in FOLDERS.values()])
    return Catalog(url, ImageStore(settings.image_dir), photos)


@pytest.fixture
def three_species(cat: Catalog) -> Catalog:
    """Mola, Shing and Gajar: the first 8 photos of each ingested and approved."""
    for slug in ("mola", "shing", "gajar"):
        cat.set_status(cat.ingest(slug, 0, 8))
    return cat

"""A small crawl-like catalog of real web-20 photos: four species, eight photos each (stored
small), one of them filed under the wrong species, one flipped copy that pHash misses; deduped,
so the images are ``unique``. Curation runs on a 64 px backbone input to keep the suite fast."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import ImageOps
from sqlalchemy import select

from catalog import db as catalog_db
from catalog.limits import limits_from_settings
from catalog.models import Image, Species
from catalog.settings import Settings, get_settings
from catalog.species import SpeciesSpec, get_species, upsert_species
from catalog.store import ImageStore
from pipeline.curate.passes import CurateOptions
from pipeline.dedupe.grouping import run_dedupe
from pipeline.importer import import_files
from tests.labeling.conftest import label_studio, review_env  # noqa: F401

SPECIES = {"baim": "Baim", "hilsa": "Hilsa", "koi": "Koi", "tilapia": "Tilapia"}
PER_CLASS = 8
# label scores from the run's backbone alone; the label ensemble has a test of its own
FAST = CurateOptions(folds=3, hyper={"image_size": 64}, quality=False, ensemble=False)


@dataclass
class CurateCatalog:
    settings: Settings
    ids: dict[str, list[int]]  # slug -> image ids imported under that keyword
    wrong: int  # a koi photo filed under baim
    original: int  # a hilsa photo ...
    flipped: int  # ... and its mirror image, under hilsa too


def import_under(session, slug: str, files: list[Path]) -> list[int]:
    before = set(session.scalars(select(Image.id)))
    import_files(session, ImageStore(get_settings().image_dir), files,
                 get_species(session, slug).id, limits_from_settings())
    session.flush()
    return sorted(set(session.scalars(select(Image.id))) - before)


def build_catalog(fishdata: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> CurateCatalog:
    monkeypatch.setenv("SHOAL_MAX_LONG_SIDE", "160")
    get_settings.cache_clear()
    files = {slug: sorted((fishdata / "web-20" / folder).iterdir())[:PER_CLASS]
             for slug, folder in SPECIES.items()}
    mirror = tmp / "mirror.jpg"
    ImageOps.mirror(PILImage.open(files["hilsa"][0]).convert("RGB")).save(mirror, quality=95)
    with catalog_db.session_scope() as session:
        upsert_species(session, [SpeciesSpec(slug=s, latin_name=s.title()) for s in SPECIES])
        ids = {slug: import_under(session, slug, fs) for slug, fs in files.items()}
        wrong = import_under(session, "baim", [sorted((fishdata / "web-20" / "Koi").iterdir())
                                               [PER_CLASS]])[0]
        flipped = import_under(session, "hilsa", [mirror])[0]
        run_dedupe(session)
    return CurateCatalog(get_settings(), ids, wrong, ids["hilsa"][0], flipped)


@pytest.fixture
def catalog(sqlite_env: Settings, fishdata: Path, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[CurateCatalog]:
    yield build_catalog(fishdata, tmp_path, monkeypatch)


def species_id(session, slug: str) -> int:
    return session.scalar(select(Species.id).where(Species.slug == slug))


@pytest.fixture
def review_catalog(
    review_env: Settings,  # noqa: F811
    fishdata: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[CurateCatalog]:
    """The same catalog, in a data dir a real Label Studio serves."""
    yield build_catalog(fishdata, tmp_path, monkeypatch)

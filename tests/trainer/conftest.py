"""A small real dataset in a fresh catalog: 3 web-20 species, 6 photos each (2 for val)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog import db as catalog_db
from catalog.settings import Settings, get_settings
from catalog.store import ImageStore
from tests.trainer.catalog_data import create_version, import_species

SPECIES = {"baim": "Baim", "hilsa": "Hilsa", "koi": "Koi"}
PER_CLASS = 6
# a small model input keeps the suite fast; the recipe's 224 px is exercised by the benchmark
FAST = {"image_size": 64, "epochs": 1, "batch_size": 8}


@pytest.fixture
def small_env(
    sqlite_env: Settings, fishdata: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.setenv("SHOAL_MAX_LONG_SIDE", "160")
    get_settings.cache_clear()
    settings = get_settings()
    folders = {
        slug: sorted((fishdata / "web-20" / folder).iterdir())[:PER_CLASS]
        for slug, folder in SPECIES.items()
    }
    with catalog_db.session_scope() as session:
        images = import_species(session, ImageStore(settings.image_dir), folders)
        create_version(session, images, "small-v1",
                       split=lambda _sha, pos: "val" if pos >= PER_CLASS - 2 else "train")
    yield settings

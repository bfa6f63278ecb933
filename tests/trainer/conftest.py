"""A small real dataset in a fresh catalog: 3 web-20 species, 6 photos each (2 for val)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog import db as catalog_db
from catalog.settings import Settings, get_settings
from catalog.store import ImageStore
from tests.pipeline.conftest import broker_env, pg_env, spawn, start_worker  # noqa: F401
from tests.trainer.catalog_data import create_version, import_species

SPECIES = {"baim": "Baim", "hilsa": "Hilsa", "koi": "Koi"}
PER_CLASS = 6
# a small model input keeps the suite fast; the recipe's 224 px is exercised by the benchmark
FAST = {"image_size": 64, "epochs": 1, "batch_size": 8}


def load_small(fishdata: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Import the photos (stored small) and freeze them as version ``small-v1``."""
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
    return settings


@pytest.fixture
def small_env(
    sqlite_env: Settings, fishdata: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    yield load_small(fishdata, monkeypatch)


@pytest.fixture
def small_broker_env(
    broker_env: dict, fishdata: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> dict:
    """The small dataset in a PostgreSQL catalog, with Redis as broker for real workers."""
    load_small(fishdata, monkeypatch)
    return broker_env

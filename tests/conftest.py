"""Shared fixtures: a fresh catalog on SQLite or PostgreSQL, settings pointed at a temp dir."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from catalog import db as catalog_db
from catalog.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get(
    "SHOAL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def fishdata_dir() -> Path:
    return Path(os.environ.get("SHOAL_FISHDATA", REPO.parent / "shared" / "fishdata"))


@pytest.fixture(scope="session")
def fishdata() -> Path:
    path = fishdata_dir()
    assert path.is_dir(), f"real photos expected at {path} (set SHOAL_FISHDATA)"
    return path


def _reset_caches() -> None:
    get_settings.cache_clear()
    catalog_db.get_engine.cache_clear()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"shoal_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        catalog_db.get_engine.cache_clear()
        with admin.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
            ), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def shoal_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str
) -> Iterator[Settings]:
    """Settings pointed at a temp data dir and a fresh, migrated catalog (both databases)."""
    yield from _make_env(monkeypatch, tmp_path, db_url)


@pytest.fixture
def sqlite_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    """Like ``shoal_env`` but on SQLite only, for tests whose subject is not the database."""
    yield from _make_env(monkeypatch, tmp_path, f"sqlite:///{tmp_path / 'catalog.db'}")


def _make_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> Iterator[Settings]:
    for key in list(os.environ):
        if key.startswith("SHOAL_") and key not in ("SHOAL_TEST_PG_URL", "SHOAL_FISHDATA",
                                                    "SHOAL_RECORDED"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SHOAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SHOAL_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    _reset_caches()
    catalog_db.upgrade(url)
    from catalog.species import ensure_default_species

    with catalog_db.session_scope(url) as session:
        ensure_default_species(session)
    yield get_settings()
    catalog_db.get_engine(url).dispose()
    _reset_caches()

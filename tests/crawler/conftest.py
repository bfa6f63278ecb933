"""The local test site on loopback and a catalog with species it knows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from catalog.db import session_scope
from catalog.species import SpeciesSpec, upsert_species
from pipeline.demo.site.server import TestSite, serve
from pipeline.demo.site.species import WEB20_LATIN, latin_species_map

FOLDERS = ["Mola", "Shing"]  # two small web-20 folders (19 photos each)
SLUGS = {"Mola": "mola", "Shing": "shing"}


@pytest.fixture(scope="session")
def site(fishdata: Path) -> Iterator[TestSite]:
    web20 = fishdata / "web-20"
    with serve(web20, latin_species_map(web20, FOLDERS), slow_seconds=4) as running:
        yield running


def _species(folder: str) -> SpeciesSpec:
    latin = WEB20_LATIN[folder]
    return SpeciesSpec(slug=SLUGS[folder], latin_name=latin, name_en=f"{folder} fish",
                       keywords={"la": [latin], "en": [f"{folder} fish"]})


def allow_local(monkeypatch: pytest.MonkeyPatch, *urls: str) -> None:
    """Let the crawler reach these loopback servers too (SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS)."""
    entries = [e for e in os.environ.get("SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS", "").split(",") if e]
    entries += [urlsplit(url).netloc for url in urls]
    monkeypatch.setenv("SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS", ",".join(entries))


def point_at(site: TestSite, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in site.env().items():  # sites, no throttling, no retries, 2 s timeout
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SHOAL_CRAWL_INGEST_WORKERS", "2")
    with session_scope() as session:
        upsert_species(session, [_species(f) for f in FOLDERS])


@pytest.fixture
def crawl_env(sqlite_env, site: TestSite, monkeypatch: pytest.MonkeyPatch) -> TestSite:
    """SQLite catalog + every spider pointed at the test site."""
    point_at(site, monkeypatch)
    return site


@pytest.fixture
def crawl_env_any_db(shoal_env, site: TestSite, monkeypatch: pytest.MonkeyPatch) -> TestSite:
    """Like ``crawl_env`` on SQLite and on PostgreSQL."""
    point_at(site, monkeypatch)
    return site


@pytest.fixture(scope="session")
def recordings() -> Path:
    """The real recorded responses, read in place (never copied into the repository)."""
    from pipeline.demo.site.recorded import recorded_dir

    path = recorded_dir()
    assert (path / "README.md").is_file(), (
        f"the recorded responses are expected at {path} (../shared/recorded beside the "
        "checkout, or SHOAL_RECORDED)")
    return path

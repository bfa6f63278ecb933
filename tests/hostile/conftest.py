"""Hostile-world fixtures. The crawler's: the local test site, a second server, a planted shop;
and a small trained run for the commands that load a model."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalog import db as catalog_db
from catalog.species import ensure_default_species
from pipeline.demo.site.server import TestSite, serve
from pipeline.demo.site.species import latin_species_map
from tests.crawler.conftest import FOLDERS, point_at
from tests.hostile.shoal_proc import child_env, shoal


@pytest.fixture(scope="module")
def crawl_site(fishdata: Path) -> Iterator[TestSite]:
    web20 = fishdata / "web-20"
    with serve(web20, latin_species_map(web20, FOLDERS), hostile=False) as running:
        yield running


@pytest.fixture(scope="module")
def other_server(fishdata: Path) -> Iterator[TestSite]:
    """A second server on loopback (another port): another host, for robots.txt and for the
    addresses a hostile page points the crawler at."""
    with serve(fishdata / "web-20", {}, hostile=False) as running:
        yield running


@pytest.fixture
def crawl_env(sqlite_env, crawl_site: TestSite, monkeypatch: pytest.MonkeyPatch) -> TestSite:
    """SQLite catalog, the spiders pointed at the test site (only its address allowed)."""
    point_at(crawl_site, monkeypatch)
    return crawl_site


def planted_shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, base_url: str,
                 image_hosts: list[str] | None = None, max_pages: int = 3) -> str:
    """A shop profile NAME over a planted page; its source name."""
    monkeypatch.setenv("SHOAL_CRAWL_PROFILE_DIRS", str(tmp_path))
    hosts = ", ".join(f'"{h}"' for h in image_hosts or [])
    (tmp_path / f"{name}.yaml").write_text(
        f"name: {name}\nkind: shop\nsite: {name}.example\nbase_url: {base_url}\n"
        f"search_url: '{{base}}/search?q={{keyword}}'\nlanguages: [la]\nmax_pages: {max_pages}\n"
        f"image_hosts: [{hosts}]\n"
        "shop: {item: 'ul.results li.product', image: img, title: 'a.title::text',"
        " next_page: 'a.next::attr(href)'}\n", encoding="utf-8")
    return f"shop:{name}"


CLASSES = {"koi": "Koi", "hilsa": "Hilsa"}


def _image_folder(fishdata: Path, root: Path) -> Path:
    for label, folder in CLASSES.items():
        photos = sorted((fishdata / "web-20" / folder).iterdir())[:6]
        for split, files in (("train", photos[:4]), ("val", photos[4:])):
            (root / split / label).mkdir(parents=True)
            for f in files:
                shutil.copy(f, root / split / label / f.name)
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, fishdata: Path) -> Iterator[dict]:
    """A catalog, an ImageFolder dataset and a run trained on it (small and fast)."""
    base = tmp_path_factory.mktemp("bombs")
    url = f"sqlite:///{base / 'catalog.db'}"
    catalog_db.upgrade(url)
    with catalog_db.session_scope(url) as session:
        ensure_default_species(session)
    catalog_db.get_engine(url).dispose()
    env = child_env(SHOAL_DATA_DIR=str(base / "data"), SHOAL_DATABASE_URL=url)
    for key in [k for k in env if k.startswith("SHOAL_") and k not in (
            "SHOAL_DATA_DIR", "SHOAL_DATABASE_URL", "SHOAL_FISHDATA")]:
        del env[key]
    dataset = _image_folder(fishdata, base / "dataset")
    done = shoal("train", "--dataset", str(dataset), "--arch", "resnet34", "--weights", "none",
                 "--epochs", "1", "--batch-size", "8", "--image-size", "64", "--json", env=env)
    assert done.rc == 0, done.stdout + done.stderr
    run = done.json()[0]
    assert run["state"] == "succeeded"
    photo = next((dataset / "val" / "koi").iterdir())
    normal = shoal("predict", str(photo), "--run", str(run["run"]), "--json", env=env)
    assert normal.rc == 0 and normal.json()[0]["predictions"], normal.stderr
    report = shoal("report", "--run", str(run["run"]), "--out", str(base / "ok.html"), env=env)
    assert report.rc == 0, report.stderr
    yield {"env": env, "run": str(run["run"]), "dataset": dataset, "base": base, "photo": photo,
           "peaks": {"train": done.peak_rss_mb, "predict": normal.peak_rss_mb,
                     "report": report.peak_rss_mb}}

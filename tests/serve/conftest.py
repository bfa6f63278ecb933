"""A catalog with a small real dataset and one trained run, shared by a test module; the app
over it through FastAPI's test client (as a loopback client)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from catalog.db import session_scope
from catalog.settings import Settings
from pipeline.serve.process import ServeProcess, free_port
from tests.conftest import _make_env
from tests.trainer.conftest import FAST, load_small
from trainer.runs import create_run
from trainer.train import train_run

TOKEN = "test-token-0123456789"


def train_small(**over) -> int:  # type: ignore[no-untyped-def]
    args = {"dataset": "small-v1", "arch": "resnet34", "weights": "none", **FAST, **over}
    with session_scope() as session:
        run_id = create_run(session, **args).id
    return train_run(run_id).id


@dataclass(frozen=True)
class Served:
    settings: Settings
    run_id: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fishdata: Path) -> Iterator[Served]:
    """A migrated SQLite catalog holding ``small-v1`` and a trained run."""
    tmp = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as mp:
        env = _make_env(mp, tmp, f"sqlite:///{tmp / 'catalog.db'}")
        next(env)
        mp.setenv("SHOAL_API_TOKEN", TOKEN)
        # species names resolve against a GBIF that is not there: nothing leaves the machine
        mp.setenv("SHOAL_CRAWL_SITE_GBIF_API", f"http://127.0.0.1:{free_port()}/v1")
        settings = load_small(fishdata, mp)
        yield Served(settings, train_small())
        next(env, None)


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[TestClient]:
    from pipeline.serve.app import create_app

    with TestClient(create_app(), client=("127.0.0.1", 50000)) as c:
        yield c


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def photo(fishdata: Path, folder: str = "Koi", n: int = 0) -> Path:
    return sorted((fishdata / "web-20" / folder).iterdir())[n]


@pytest.fixture(scope="module")
def server(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`shoal serve` as a real uvicorn process over the module's catalog."""
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    with ServeProcess(log) as proc:
        yield proc

"""Fixtures for the queue: a PostgreSQL catalog, a dedicated Redis DB, real Celery processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from catalog import db as catalog_db
from catalog.db import session_scope
from catalog.models import Job, JobState
from catalog.settings import get_settings
from catalog.species import ensure_default_species

REPO = Path(__file__).resolve().parents[2]
# each pytest-xdist worker (gw0, gw1, ...) flushes and listens on a Redis DB of its own; a
# default Redis has DBs 0-15, so 11 + N leaves room for 5 workers
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_URL = os.environ.get("SHOAL_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{11 + _WORKER}")

# short enough for a test to see a killed worker's task come back
FAST_REDELIVERY = {
    "SHOAL_VISIBILITY_TIMEOUT": "3",
    "SHOAL_UNACKED_RESTORE_INTERVAL": "1",
    "SHOAL_JOB_LEASE_SECONDS": "3",
}


def reset_caches() -> None:
    get_settings.cache_clear()
    catalog_db.get_engine.cache_clear()


@pytest.fixture
def pg_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_database: str) -> Iterator[dict]:
    """A migrated PostgreSQL catalog and data dir; returns the SHOAL_* env a worker needs."""
    for key in list(os.environ):
        if key.startswith("SHOAL_") and key not in ("SHOAL_TEST_PG_URL", "SHOAL_FISHDATA"):
            monkeypatch.delenv(key)
    env = {"SHOAL_DATABASE_URL": pg_database, "SHOAL_DATA_DIR": str(tmp_path / "data")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    reset_caches()
    catalog_db.upgrade(pg_database)
    with catalog_db.session_scope(pg_database) as session:
        ensure_default_species(session)
    yield env
    catalog_db.get_engine(pg_database).dispose()
    reset_caches()


@pytest.fixture
def broker_env(pg_env: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    """pg_env plus an empty Redis DB as broker and result backend, for this process too."""
    redis.Redis.from_url(REDIS_URL).flushdb()
    monkeypatch.setenv("SHOAL_BROKER_URL", REDIS_URL)
    reset_caches()
    return {**pg_env, "SHOAL_BROKER_URL": REDIS_URL, **FAST_REDELIVERY}


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.popen.poll() is None, f"{self.name} exited:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"{self.name}: no {needle!r}:\n{self.text()}"
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start `python -m ARGS` as a process group of its own (so SIGKILL takes it all); all
    are killed at the end of the test."""
    procs: list[Proc] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> Proc:
        log = tmp_path / f"{name}.log"
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", *args], cwd=REPO, env=full_env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        proc = Proc(name, popen, log)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


@pytest.fixture
def start_worker(spawn: Callable[..., Proc], broker_env: dict) -> Callable[..., Proc]:
    def start(name: str, queues: str = "crawl,dedupe,review,export") -> Proc:
        proc = spawn(name, celery_worker(name, queues), broker_env)
        proc.wait_for(" ready.")
        return proc

    return start


def celery_worker(name: str, queues: str) -> list[str]:
    """What `shoal worker -Q QUEUES -P solo -n NAME@%h` runs, without importing every CLI group
    (the `shoal` command imports torch and the Label Studio SDK at startup)."""
    return ["celery", "-A", "pipeline.jobs.broker", "worker", "-Q", queues, "-P", "solo",
            "-n", f"{name}@%h", "-l", "info"]


BEAT = ["celery", "-A", "pipeline.jobs.broker", "beat", "-S", "pipeline.jobs.beat:CatalogScheduler",
        "-l", "info"]


def wait_until(check: Callable[[], object], timeout: float = 90, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.1)


def job_row(job_id: int) -> Job:
    with session_scope() as session:
        return session.get_one(Job, job_id)


def finished(job_id: int) -> Job | None:
    job = job_row(job_id)
    return job if job.state in JobState.FINISHED else None

"""Faults with real processes: a Redis of the test's own restarted mid-job (with and without
AOF) or flushed, a broker down at submit, the catalog's connections killed mid-job."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, func, select, text

from catalog.db import session_scope
from catalog.models import Image, ImageSource, Job, JobState
from pipeline.jobs import submit as jobs
from tests.pipeline.conftest import (
    BEAT,
    REDIS_URL,
    REPO,
    Proc,
    celery_worker,
    finished,
    job_row,
    reset_caches,
    wait_until,
)

pytestmark = [pytest.mark.celery, pytest.mark.postgres, pytest.mark.redis]

# the sweeper, not Redis's visibility timeout (12 h by default), must bring lost work back
SWEEPING = {
    "SHOAL_JOB_LEASE_SECONDS": "3",
    "SHOAL_SWEEP_INTERVAL": "1",
    "SHOAL_JOB_LOST_AFTER": "4",
    "SHOAL_UNACKED_RESTORE_INTERVAL": "1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    """A redis-server of this test's own, on a free port (the shared one is never touched)."""

    port: int
    workdir: Path
    aof: bool
    popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else \
            ["--appendonly", "no"]
        self.popen = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(self.workdir), "--daemonize", "no", *persistence],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_until(lambda: self._pings(client), timeout=20, what="redis-server to start")

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


@pytest.fixture
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """Without persistence, unless the test parametrizes it (indirect) with aof=True."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(free_port(), workdir, aof=getattr(request, "param", False))
    server.start()
    yield server
    server.stop()


def point_app_at(url: str) -> None:
    """This process's Celery app read its broker URL once: point it anew, with new pools
    (kombu keeps them in a registry by URL: reset it, so none stays closed or stale)."""
    from kombu import pools

    from pipeline.jobs.broker import app

    app.conf.broker_url = app.conf.result_backend = url
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def fault_env(pg_env: dict, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[dict]:
    env = {**pg_env, "SHOAL_BROKER_URL": own_redis.url, **SWEEPING}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    point_app_at(own_redis.url)
    yield env
    point_app_at(REDIS_URL)  # where the other tests' workers listen


@pytest.fixture
def worker(spawn: Callable[..., Proc], fault_env: dict) -> Callable[..., Proc]:
    def start(name: str, queues: str = "crawl,dedupe", **env: str) -> Proc:
        args = celery_worker(name, queues)
        args[args.index("solo")] = "prefork"  # the default pool: a task in a child process
        proc = spawn(name, [*args, "-c", "1"], {**fault_env, **env})
        proc.wait_for(" ready.")
        return proc

    return start


def counts() -> tuple[int, int, int]:
    with session_scope() as session:
        return (session.scalar(select(func.count()).select_from(Image)),
                session.scalar(select(func.count(func.distinct(Image.sha256)))),
                session.scalar(select(func.count()).select_from(ImageSource)))


def import_started(job_id: int, rows: int = 10) -> Callable[[], bool]:
    def check() -> bool:
        job = job_row(job_id)
        assert job.state in (JobState.QUEUED, JobState.RUNNING), f"ended {job.state} too soon"
        return job.state == JobState.RUNNING and counts()[0] >= rows

    return check


def assert_imported_once(job: Job, n_files: int) -> None:
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.result["new"] + job.result["existing"] + job.result["rejected"] == n_files
    images, distinct, sources = counts()
    assert sources == n_files  # one place found per file, however often the job ran
    assert images == distinct == n_files - job.result["rejected"]


@pytest.mark.parametrize("own_redis", [False, True], ids=["no-aof", "aof"], indirect=True)
def test_broker_restart_mid_job_loses_nothing(worker, own_redis, fishdata: Path) -> None:
    """The worker cannot ack after the connection loss, so it terminates the task; with AOF
    the message survives but would only come back after the 12 h visibility timeout. The
    sweeper sees the lease lapse and sends the job again."""
    folder = fishdata / "web-20" / "Baim"
    n_files = len(list(folder.iterdir()))
    w = worker("w-restart")
    first, follower = jobs.submit_chain([
        ("import_photos", {"path": str(folder), "species": "chub-mackerel"}), ("dedupe", {})])
    wait_until(import_started(first.id), what="the import to commit its first rows")
    own_redis.restart()
    done = wait_until(lambda: finished(follower.id), timeout=180, what="the chain to end")
    assert done.state == JobState.SUCCEEDED, (done.state, done.message, w.text()[-3000:])
    head = job_row(first.id)
    assert_imported_once(head, n_files)
    assert head.attempts == 2
    # the second attempt comes from the sweeper (the lease lapsed with no live worker) or, when
    # the worker's own retry of the lost connection gets there first (seen with AOF in a
    # fresh-clone run), from that retry: either way exactly once, nothing imported twice
    if head.recoveries:
        assert head.recoveries == 1
        assert f"job {first.id} was lost (running with no live worker" in w.text()


def test_redis_losing_its_data_loses_no_job(worker, spawn, fault_env: dict, own_redis,
                                            fishdata: Path) -> None:
    """FLUSHALL mid-job: the running job's unacked message and the queued job's message are
    gone; the running one still finishes (and its chain goes on), the queued one is swept,
    here by beat (the worker's sweeper is off)."""
    folder = fishdata / "web-20" / "Baim"
    w = worker("w-flush", queues="crawl,dedupe", SHOAL_SWEEP_INTERVAL="0")
    beat = spawn("beat", BEAT, {**fault_env, "SHOAL_BEAT_INTERVAL": "0.5"})
    first, follower = jobs.submit_chain([
        ("import_photos", {"path": str(folder), "species": "chub-mackerel"}), ("dedupe", {})])
    behind = jobs.submit("import_photos", {"path": str(fishdata / "web-20" / "Mola"),
                                           "species": "hairtail"})
    wait_until(import_started(first.id), what="the import to commit its first rows")
    own_redis.client().flushall()
    for job_id in (follower.id, behind.id):
        done = wait_until(lambda j=job_id: finished(j), timeout=180, what=f"job {job_id}")
        assert done.state == JobState.SUCCEEDED, (done.message, w.text()[-3000:])
    assert job_row(first.id).recoveries == 0  # it never stopped
    assert job_row(behind.id).recoveries == 1
    assert f"job {behind.id} was lost (queued " in beat.text()
    assert "was lost" not in w.text()


def shoal(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def test_broker_down_at_submit_is_one_line_exit_3_and_retried_later(
    worker, own_redis, fault_env: dict
) -> None:
    own_redis.stop()
    started = time.monotonic()
    result = shoal(["jobs", "submit", "dedupe"], fault_env)
    took = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback, no log
    assert result.stderr.startswith("error: cannot reach the broker to queue job 1: ")
    assert result.stderr.rstrip().endswith("`shoal jobs retry 1` once it is back")
    assert took < 20, f"{took:.1f}s"  # the interpreter's start included; it was 20 s of retries
    job = job_row(1)
    assert job.state == JobState.CANCELLED and job.message.startswith("broker unreachable: ")
    swept = shoal(["jobs", "sweep", "--json"], fault_env)  # nothing can be sent: it says so
    assert swept.returncode == 3 and swept.stderr.count("\n") == 1, swept.stderr
    assert swept.stderr.startswith("error: sweep stopped: broker unreachable: ")

    own_redis.start()
    worker("w-later", queues="dedupe")
    result = shoal(["jobs", "retry", "1", "--json"], fault_env)
    assert result.returncode == 0, result.stderr
    done = wait_until(lambda: finished(1), what="the retried job")
    assert done.state == JobState.SUCCEEDED and done.attempts == 1
    assert done.message is None and done.task_id != job.task_id


def other_backends(database_url: str) -> Callable[[], int]:
    """Terminate every session of the test's database but the caller's own."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")

    def terminate() -> int:
        with engine.connect() as conn:
            return len(conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all())

    return terminate


def test_transient_database_errors_are_retried(pg_env: dict, tmp_path: Path) -> None:
    """Real errors from real servers: a terminated session, a serialization failure, a busy
    SQLite; not a constraint violation."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from pipeline.jobs.tasks import network_retry_in

    url = pg_env["SHOAL_DATABASE_URL"]
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        other_backends(url)()
        with pytest.raises(OperationalError) as terminated:
            conn.execute(text("SELECT 1"))

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE probe (id int PRIMARY KEY, v int)"))
        conn.execute(text("INSERT INTO probe VALUES (1, 0)"))
    strict = engine.execution_options(isolation_level="REPEATABLE READ")
    with strict.connect() as first, strict.connect() as second:
        first.execute(text("SELECT v FROM probe WHERE id = 1"))
        second.execute(text("UPDATE probe SET v = 2 WHERE id = 1"))
        second.commit()
        with pytest.raises(OperationalError) as serialization:
            first.execute(text("UPDATE probe SET v = 3 WHERE id = 1"))
        first.rollback()
        with pytest.raises(IntegrityError) as duplicate:
            first.execute(text("INSERT INTO probe VALUES (1, 0)"))
    engine.dispose()

    lite = create_engine(f"sqlite:///{tmp_path / 'busy.db'}", connect_args={"timeout": 0})
    with lite.connect() as writer, lite.connect() as other:
        writer.execute(text("CREATE TABLE t (x int)"))
        writer.commit()
        writer.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock
        with pytest.raises(OperationalError) as busy:
            other.execute(text("INSERT INTO t VALUES (2)"))
    lite.dispose()

    for caught in (terminated, serialization, busy):
        assert network_retry_in(caught.value, 1) is not None, repr(caught.value)
    wrapped = RuntimeError("the import failed")
    wrapped.__cause__ = terminated.value
    assert network_retry_in(wrapped, 1) is not None
    assert network_retry_in(duplicate.value, 1) is None
    assert network_retry_in(ValueError("bad input"), 1) is None


def test_lost_database_connection_during_a_job_is_retried(worker, fault_env: dict,
                                                          fishdata: Path) -> None:
    folder = fishdata / "web-20" / "Baim"
    n_files = len(list(folder.iterdir()))
    w = worker("w-pg", queues="crawl")
    job = jobs.submit("import_photos", {"path": str(folder), "species": "chub-mackerel"})
    wait_until(import_started(job.id), what="the import to commit its first rows")
    terminate = other_backends(fault_env["SHOAL_DATABASE_URL"])

    def retried() -> bool:  # until one termination lands inside the body's transaction
        terminate()
        time.sleep(0.3)
        row = job_row(job.id)
        assert row.state != JobState.FAILED, row.error
        return row.attempts >= 2 or "transient error" in (row.message or "")

    wait_until(retried, timeout=60, what="a termination to hit the job")
    done = wait_until(lambda: finished(job.id), timeout=180, what="the retried job")
    assert_imported_once(done, n_files)
    assert done.attempts >= 2, w.text()[-3000:]

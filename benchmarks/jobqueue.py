"""Queue benchmark: what a job costs through Redis and a worker beside running it in-process.

    python benchmarks/jobqueue.py [--jobs 40] [--database-url URL] [--redis URL]

The job is a real one with little work in it (a dedupe pass over an empty catalog), so the
difference between the two is the queue's overhead: the message, the worker's pickup and the
result, on top of what both share (the jobs row, its state changes, lease and heartbeat).
Baseline: the jobs submitted with no broker (run in-process). Then the same number through
Redis (default redis://127.0.0.1:6379/13, flushed) to one solo worker process: submit rate,
end-to-end throughput, latency from submit to finish. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def setup(data_dir: Path, database_url: str | None) -> str:
    os.environ["SHOAL_DATA_DIR"] = str(data_dir)
    url = database_url or f"sqlite:///{data_dir / 'catalog.db'}"
    os.environ["SHOAL_DATABASE_URL"] = url
    os.environ.pop("SHOAL_BROKER_URL", None)
    from catalog import db
    from catalog.settings import get_settings

    get_settings.cache_clear()
    db.upgrade(url)
    return url


def latencies(ids: list[int]) -> list[float]:
    from catalog.db import session_scope
    from catalog.leases import as_utc
    from catalog.models import Job

    with session_scope() as session:
        rows = [session.get_one(Job, i) for i in ids]
        assert all(r.state == "succeeded" for r in rows), [r.error for r in rows]
        return [(as_utc(r.finished_at) - as_utc(r.created_at)).total_seconds() for r in rows]


def in_process(n: int) -> dict[str, float]:
    from pipeline.jobs import submit as jobs

    jobs.submit("dedupe")  # warm-up: imports, first connection
    start = time.perf_counter()
    ids = [jobs.submit("dedupe").id for _ in range(n)]
    seconds = time.perf_counter() - start
    lat = latencies(ids)
    return {"jobs": n, "seconds": round(seconds, 3), "jobs_per_s": round(n / seconds, 2),
            "latency_median_s": round(statistics.median(lat), 4)}


def queued(n: int, redis_url: str, tmp: Path) -> dict[str, float]:
    import redis

    from catalog.db import session_scope
    from catalog.models import Job
    from catalog.settings import get_settings
    from pipeline.jobs import submit as jobs

    redis.Redis.from_url(redis_url).flushdb()
    os.environ["SHOAL_BROKER_URL"] = redis_url
    get_settings.cache_clear()
    log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "pipeline.jobs.broker", "worker", "-Q", "dedupe",
         "-P", "solo", "-n", "bench@%h", "-l", "warning"],
        cwd=REPO, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        first = jobs.submit("dedupe")  # warm-up, and wait for the worker to be up
        wait_done([first.id], worker)
        start = time.perf_counter()
        ids = [jobs.submit("dedupe").id for _ in range(n)]
        submitted = time.perf_counter() - start
        wait_done(ids, worker)
        seconds = time.perf_counter() - start
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
    with session_scope() as session:
        hosts = {session.get_one(Job, i).worker_host for i in ids}
    assert len(hosts) == 1 and hosts.pop().startswith("bench@")
    lat = latencies(ids)
    return {"jobs": n, "submit_seconds": round(submitted, 3),
            "submits_per_s": round(n / submitted, 2), "seconds": round(seconds, 3),
            "jobs_per_s": round(n / seconds, 2),
            "latency_median_s": round(statistics.median(lat), 4),
            "latency_max_s": round(max(lat), 4)}


def wait_done(ids: list[int], worker: subprocess.Popen, timeout: float = 600) -> None:
    from sqlalchemy import func, select

    from catalog.db import session_scope
    from catalog.models import Job

    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            done = session.scalar(select(func.count()).select_from(Job).where(
                Job.id.in_(ids), Job.state.in_(("succeeded", "failed", "cancelled"))))
        if done == len(ids):
            return
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the worker stopped or the jobs did not finish")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-queue-bench-") as tmp:
        url = setup(Path(tmp), args.database_url)
        base = in_process(args.jobs)
        print(f"in-process (baseline): {base['jobs']} jobs in {base['seconds']} s, "
              f"{base['jobs_per_s']} jobs/s, median {base['latency_median_s']} s")
        q = queued(args.jobs, args.redis, Path(tmp))
        print(f"Redis + 1 solo worker: submitted {q['submits_per_s']} jobs/s; "
              f"{q['jobs']} jobs done in {q['seconds']} s, {q['jobs_per_s']} jobs/s; "
              f"submit-to-finish median {q['latency_median_s']} s, max {q['latency_max_s']} s")
        ratio = round(base["jobs_per_s"] / q["jobs_per_s"], 2)
        print(f"in-process / queued throughput: {ratio}x")
        print(json.dumps({"benchmark": "queue", "database": url.split(":")[0],
                          "in_process": base, "queued": q, "in_process_over_queued": ratio}))


if __name__ == "__main__":
    main()

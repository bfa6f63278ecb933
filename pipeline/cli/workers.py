"""`shoal worker` and `shoal beat`: thin wrappers over Celery's own worker and beat."""

from __future__ import annotations

import typer

from catalog.db import check_migrated
from catalog.settings import get_settings
from pipeline.errors import UsageError
from pipeline.jobs.broker import QUEUES


def require_broker(what: str) -> None:
    if not get_settings().jobs.broker_url:
        raise UsageError(f"{what} needs a broker: set SHOAL_BROKER_URL (e.g. "
                         "redis://127.0.0.1:6379/0); without one every job runs in-process")
    check_migrated()


def worker_cmd(
    queues: str = typer.Option(",".join(q for q in QUEUES if q != "train"), "--queues", "-Q",
                               help="Comma-separated queues to serve (train: on its own)."),
    concurrency: int = typer.Option(None, "--concurrency", "-c", help="Worker processes "
                                    "(default: 1 when serving train, else the CPU count)."),
    pool: str = typer.Option("prefork", "--pool", "-P", help="prefork, solo or threads."),
    hostname: str = typer.Option(None, "--hostname", "-n", help="Node name, e.g. crawl1@%h."),
    loglevel: str = typer.Option("info", "--loglevel", "-l", help="debug, info, warning."),
) -> None:
    """Start a Celery worker for some queues: crawl, dedupe, review, export, train.

    Training runs one job at a time: serve `train` from a worker of its own (-Q train)."""
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(chosen) - set(QUEUES))
    if unknown or not chosen:
        raise UsageError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}")
    if "train" in chosen:
        if concurrency not in (None, 1):
            raise UsageError("training runs one job at a time: serve `train` from a worker of "
                             "its own with concurrency 1, e.g. `shoal worker -Q train`")
        concurrency = 1
    require_broker("a worker")
    from pipeline.jobs.broker import app

    argv = ["worker", "-Q", ",".join(chosen), "-P", pool, "-l", loglevel, "-E"]
    if concurrency:
        argv += ["-c", str(concurrency)]
    if hostname:
        argv += ["-n", hostname]
    app.worker_main(argv)


def beat_cmd(
    interval: float = typer.Option(None, help="Seconds between catalog reads "
                                   "(default SHOAL_BEAT_INTERVAL, 30)."),
    loglevel: str = typer.Option("info", "--loglevel", "-l", help="debug, info, warning."),
) -> None:
    """Start beat, which queues the due crawl schedules.

    Start a second one anywhere for failover: one holds the lease, the others stand by."""
    require_broker("beat")
    from pipeline.jobs.broker import app

    if interval:
        app.conf.shoal_beat_interval = interval
        app.conf.beat_max_loop_interval = max(1.0, interval)

    app.start(["beat", "-S", "pipeline.jobs.beat:CatalogScheduler", "-l", loglevel])

"""The Celery tasks, one per kind of job, and the bodies they run.

Every task takes only a job id: its arguments live on the ``jobs`` row, and a chained step
reads its parent's result there (``JobContext.parent_result``), so chains use immutable
signatures. The modules doing the work are imported inside the bodies: a worker that only
serves the ``crawl`` queue never imports torch. Each body is idempotent for one job: it first
looks for what an earlier attempt of the same job already wrote.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Task
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from catalog.db import get_engine, session_scope
from catalog.models import CrawlJob, CurationRun, DatasetVersion, JobState, TrainingRun
from catalog.settings import get_settings
from pipeline.errors import ServiceUnavailable, UsageError
from pipeline.jobs.broker import QUEUE_OF, app, task_name
from pipeline.jobs.runner import Body, JobContext, RetryJob, execute
from pipeline.jobs.transient import is_transient_db_error


# --- bodies ---------------------------------------------------------------------------------
def crawl_body(ctx: JobContext) -> dict[str, Any]:
    from crawler.runner import run_crawl
    from crawler.stats import drops

    a = ctx.args
    seen = 0

    def on_image(_result: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        limit = a.get("limit")
        ctx.notify("images", seen, limit or 0)
        ctx.progress(min(seen / limit, 0.99) if limit else 0.0, f"{seen} images")

    # run_crawl finds the crawl job of this job id again on a redelivery, and resumes it
    crawl_job_id = run_crawl(a["species"], a["source"], limit=a.get("limit"), job_id=ctx.job_id,
                             progress=on_image, env=a.get("env"))
    with session_scope() as session:
        crawl = session.get_one(CrawlJob, crawl_job_id)
        return {"crawl_job_id": crawl.id, "species": a["species"], "source": crawl.source,
                "state": crawl.state, "warning": crawl.warning,
                "dropped": drops(crawl.stats or {}), "stats": crawl.stats}


def dedupe_body(ctx: JobContext) -> dict[str, Any]:
    from pipeline.dedupe.grouping import run_dedupe

    a = ctx.args
    dry_run = bool(a.get("dry_run", False))
    radius, dhash_radius, top = (whole_number(ctx, k) for k in ("radius", "dhash_radius", "top"))
    with session_scope() as session:
        report = run_dedupe(session, radius=radius, dhash_radius=dhash_radius,
                            rescan=bool(a.get("rescan", False)), top=10 if top is None else top,
                            dry_run=dry_run, progress=stage_progress(ctx))
        if dry_run:
            session.rollback()
        return report.as_dict()


def whole_number(ctx: JobContext, name: str) -> int | None:
    """A job argument that must be a whole number (or absent), refused in one line."""
    value = ctx.args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise UsageError(f"{ctx.kind} argument {name} must be a whole number, not {value!r}")
    return int(value)


def review_client() -> Any:
    from labeling.client import make_client

    settings = get_settings().review
    if not settings.label_studio_url or not settings.label_studio_token:
        raise ServiceUnavailable(
            "Label Studio is not configured: set SHOAL_LABEL_STUDIO_URL and "
            "SHOAL_LABEL_STUDIO_TOKEN"
        )
    # one quick retry inside the SDK: the queue retries the whole task with its own backoff
    return make_client(settings.label_studio_url, settings.label_studio_token.get_secret_value(),
                       retries=1)


def review_setup_body(ctx: JobContext) -> dict[str, Any]:
    from labeling.project import setup_project

    a, settings = ctx.args, get_settings()
    root = Path(a.get("files_root") or settings.data_dir).resolve()
    if not a.get("files_root"):
        settings.image_dir.mkdir(parents=True, exist_ok=True)
    review = settings.review
    secret = review.webhook_secret.get_secret_value() if review.webhook_secret else None
    client = review_client()
    with session_scope() as session:
        return setup_project(session, client, files_root=root, overlap=int(a.get("overlap", 1)),
                             webhook_url=a.get("webhook_url"),
                             webhook_secret=secret).as_dict()


def review_push_body(ctx: JobContext) -> dict[str, Any]:
    from labeling.push import push_tasks

    a = ctx.args
    client = review_client()
    with session_scope() as session:
        report = push_tasks(session, client, species=a.get("species"), limit=a.get("limit"),
                            order=a.get("order"), auto_accept_at=a.get("auto_accept"),
                            batch_size=int(a.get("batch_size", 500)))
        return report.as_dict()


def review_pull_body(ctx: JobContext) -> dict[str, Any]:
    from labeling.pull import pull_annotations

    client = review_client()
    with session_scope() as session:
        return pull_annotations(session, client).as_dict()


def approve_by_keyword_body(ctx: JobContext) -> dict[str, Any]:
    """Review without people: unique images approved under their crawl keyword."""
    from pipeline.datasets.approve import approve_by_keyword

    with session_scope() as session:
        return {"approved": approve_by_keyword(session)}


def approve_unsuspected_body(ctx: JobContext) -> dict[str, Any]:
    """Review without people after curation: the images the curation run (``run``, default
    the latest) judged and did not suspect are approved under their crawl keyword; its
    suspects are held back for a person. The model's own approvals (auto_accept) go first."""
    from labeling.autoaccept import latest_curation_run
    from pipeline.datasets.approve import approve_by_keyword

    with session_scope() as session:
        run = whole_number(ctx, "run") or latest_curation_run(session)
        if run is None:
            raise UsageError("no curation run to hold suspects back by: run curate first "
                             "(or approve_by_keyword, which takes every keyword unseen)")
        if session.get(CurationRun, run) is None:
            raise UsageError(f"no curation run {run} in the catalog")
        return {"approved": approve_by_keyword(session, screened_by=run),
                "curation_run_id": run}


def version_dict(version: DatasetVersion) -> dict[str, Any]:
    return {"version": version.id, "name": version.name, "n_items": version.n_items,
            "n_train": version.n_train, "n_val": version.n_val,
            "manifest_sha256": version.manifest_sha256}


def auto_accept_body(ctx: JobContext) -> dict[str, Any]:
    """The model approves what it is sure of (labeling.autoaccept), recorded as its decision;
    suspects and everything else wait for a person."""
    from labeling.autoaccept import auto_accept

    with session_scope() as session:
        return auto_accept(session, float(ctx.args.get("threshold", 0.9)),
                           ctx.args.get("run")).as_dict()


def dataset_create_body(ctx: JobContext) -> dict[str, Any]:
    from pipeline.datasets.versions import create_version

    a = ctx.args
    with session_scope() as session:
        version = session.scalar(
            select(DatasetVersion).where(DatasetVersion.job_id == ctx.job_id)
        )
        if version is None:
            # create_version commits its own transaction: the job id must be in that INSERT
            with stamp_new(session, DatasetVersion, ctx.job_id):
                version = create_version(
                    session, name=a.get("name"), species=a.get("species"),
                    min_per_class=int(a.get("min_per_class", 1)),
                    val_ratio=float(a.get("val_ratio", 0.1)),
                )
        return version_dict(version)


@contextmanager
def stamp_new(session: Session, model: type[Any], job_id: int) -> Iterator[None]:
    """Set ``job_id`` on every new ``model`` row as it is flushed, so the row and its job id
    commit together, whoever commits."""

    def stamp(sess: Session, _flush: Any, _instances: Any) -> None:
        for obj in sess.new:
            if isinstance(obj, model) and obj.job_id is None:
                obj.job_id = job_id

    event.listen(session, "before_flush", stamp)
    try:
        yield
    finally:
        event.remove(session, "before_flush", stamp)


def upstream(ctx: JobContext, arg: str, result_key: str) -> Any:
    """An argument given to the job, else what its parent in the chain produced."""
    value = ctx.args.get(arg)
    if value is None and ctx.parent_result:
        value = ctx.parent_result.get(result_key)
    if value is None:
        raise UsageError(f"{ctx.kind} job {ctx.job_id} needs {arg!r} (or a parent job giving it)")
    return value


def dataset_export_body(ctx: JobContext) -> dict[str, Any]:
    from pipeline.datasets.export import export_version

    version = upstream(ctx, "version", "version")
    fmt = ctx.args.get("format", "imagefolder")
    out = ctx.args.get("out") or get_settings().data_dir / "exports" / f"{version}-{fmt}"
    with session_scope() as session:
        path = export_version(session, version, fmt, Path(out),
                              copy=bool(ctx.args.get("copy", False)))
    return {"version": version, "format": fmt, "path": str(path)}


def train_body(ctx: JobContext) -> dict[str, Any]:
    from trainer.runs import create_run
    from trainer.train import train_run

    a = dict(ctx.args)
    with session_scope() as session:
        if a.get("run_id"):  # a run made by `shoal train --queue`
            run = session.get(TrainingRun, int(a["run_id"]))
            if run is None:
                raise UsageError(f"no training run {a['run_id']}")
        else:
            run = session.scalar(select(TrainingRun).where(TrainingRun.job_id == ctx.job_id))
        if run is None:
            run = create_run(session, dataset=upstream(ctx, "dataset", "version"),
                             arch=a.get("arch", "resnet34"), weights=a.get("weights", "imagenet"),
                             mode=a.get("mode", "frozen"), **a.get("hyper", {}))
        run.job_id = ctx.job_id
        run_id, done = run.id, run.state == JobState.SUCCEEDED
    if not done:  # a redelivery resumes the same run from its last checkpoint
        train_run(run_id, progress=stage_progress(ctx))
    with session_scope() as session:
        run = session.get_one(TrainingRun, run_id)
        return {"run_id": run.id, "state": run.state, "best_val_accuracy": run.best_val_accuracy,
                "best_epoch": run.best_epoch, "checkpoint": run.best_checkpoint_path}


def predict_body(ctx: JobContext) -> dict[str, Any]:
    """Score catalog images with a run's model (``image_predictions``, top-k): the run given,
    else the one the parent train job produced."""
    from pipeline.curate.predict import PredictSelection, predict_catalog

    a = ctx.args
    sel = PredictSelection(int(upstream(ctx, "run", "run_id")), list(a.get("status") or []),
                           list(a.get("species") or []), a.get("version"),
                           bool(a.get("unscored", False)))
    with session_scope() as session:
        return predict_catalog(session, sel, int(a.get("top_k", 3)))


def curate_body(ctx: JobContext) -> dict[str, Any]:
    """The model's first pass (``shoal curate``); a second delivery finds the run it wrote."""
    from pipeline.curate.gallery import write_gallery
    from pipeline.curate.passes import CurateOptions, curate

    a = ctx.args
    opts = CurateOptions(folds=int(a.get("folds", CurateOptions.folds)),
                         model_run_id=a.get("run"), species=a.get("species") or None,
                         quality=bool(a.get("quality", True)))
    with session_scope() as session:
        report = curate(session, opts, progress=stage_progress(ctx, "features"),
                        job_id=ctx.job_id)
        report.gallery = str(write_gallery(session, report.run_id))
        return report.as_dict()


def stage_progress(ctx: JobContext, main_stage: str = "epoch") -> Callable[[str, int, int], None]:
    """The (stage, done, total) callback of dedupe and the trainer, as job progress: the
    fraction follows ``main_stage`` when the body has one, else each stage in turn."""

    def report(stage: str, done: int, total: int) -> None:
        ctx.notify(stage, done, total)
        if stage == main_stage or main_stage not in seen:
            ctx.progress(done / total if total else 0.0, f"{stage} {done}/{total}")
        else:
            ctx.check_cancelled()
        seen.add(stage)

    seen: set[str] = set()
    return report


BATCH = 10


def import_photos_body(ctx: JobContext) -> dict[str, Any]:
    """`shoal import` as a job: photos from a folder every worker can read (a shared mount)."""
    from catalog.limits import limits_from_settings
    from catalog.species import get_species
    from catalog.store import ImageStore
    from pipeline.importer import import_scan, scan

    path = Path(ctx.args["path"])
    if not path.exists():
        raise UsageError(f"no such file or folder on {socket.gethostname()}: {path}")
    settings = get_settings()
    found = scan(path)
    files = found.files
    done = 0

    with session_scope() as session:

        def on_file(_path: Path) -> None:
            nonlocal done
            done += 1
            ctx.notify("files", done, len(files))
            if done % BATCH == 0:  # report between transactions: SQLite has one writer
                session.commit()
                ctx.progress(done / len(files), f"{done}/{len(files)} files")

        species_id = get_species(session, ctx.args["species"]).id
        report = import_scan(session, ImageStore(settings.image_dir), found, species_id,
                             limits_from_settings(settings), on_file=on_file,
                             commit_every=BATCH)
        return report.as_dict()


BODIES: dict[str, Body] = {
    "crawl": crawl_body,
    "import_photos": import_photos_body,
    "dedupe": dedupe_body,
    "review_setup": review_setup_body,
    "review_push": review_push_body,
    "review_pull": review_pull_body,
    "approve_by_keyword": approve_by_keyword_body,
    "approve_unsuspected": approve_unsuspected_body,
    "auto_accept": auto_accept_body,
    "dataset_create": dataset_create_body,
    "dataset_export": dataset_export_body,
    "train": train_body,
    "predict": predict_body,
    "curate": curate_body,
}
assert set(BODIES) == set(QUEUE_OF)


# --- retries --------------------------------------------------------------------------------
def network_errors() -> tuple[type[BaseException], ...]:
    """Errors worth a retry: the other end was unreachable or slow. Everything else fails."""
    import httpx
    import requests

    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, httpx.TransportError,
                                         requests.ConnectionError, requests.Timeout]
    try:
        from labeling.client import LabelStudioUnavailable
    except ImportError:
        pass
    else:
        errors.append(LabelStudioUnavailable)
    return tuple(errors)


def is_network_error(exc: BaseException) -> bool:
    """The error, or one it was raised from, is a network error (modules wrap them)."""
    kinds = network_errors()
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__
    return False


def is_retryable(exc: BaseException) -> bool:
    """A network error, or a database error that passes (dropped connection, serialization
    failure, deadlock), met directly or wrapped by the module that met it."""
    seen: BaseException | None = exc
    while seen is not None:
        if is_transient_db_error(seen):
            return True
        seen = seen.__cause__
    return is_network_error(exc)


def network_retry_in(exc: BaseException, attempt: int) -> float | None:
    qs = get_settings().jobs
    if attempt > qs.max_retries or not is_retryable(exc):
        return None
    return float(get_exponential_backoff_interval(
        factor=2, retries=attempt - 1, maximum=qs.retry_backoff_max, full_jitter=True) + 1)


# --- Celery tasks ---------------------------------------------------------------------------
def run_delivery(task: Task, job_id: int) -> dict[str, Any] | None:
    host = task.request.hostname or f"celery@{socket.gethostname()}"
    try:
        return execute(job_id, BODIES, host=host, retry_in=network_retry_in)
    except RetryJob as retry:
        raise task.retry(exc=retry.cause, countdown=retry.countdown, max_retries=None) from None


def run_in_process(job_id: int) -> dict[str, Any] | None:
    return execute(job_id, BODIES, host=f"in-process@{socket.gethostname()}")


def define(kind: str) -> Task:
    def job_task(self: Task, job_id: int) -> dict[str, Any] | None:
        return run_delivery(self, job_id)

    job_task.__name__ = job_task.__qualname__ = kind
    job_task.__doc__ = f"Run a {kind} job (its arguments are on its jobs row)."
    return app.task(job_task, name=task_name(kind), bind=True)


# one Celery task per job kind, named pipeline.jobs.tasks.<kind> (task_name), as the queues'
# routes expect
TASKS: dict[str, Task] = {kind: define(kind) for kind in BODIES}


# --- worker process hooks -------------------------------------------------------------------
@worker_ready.connect
def _start_sweeper(**kwargs: Any) -> None:
    from pipeline.jobs.sweeper import start_in_worker

    start_in_worker(**kwargs)


@worker_shutdown.connect
def _stop_sweeper(**kwargs: Any) -> None:
    from pipeline.jobs.sweeper import stop_in_worker

    stop_in_worker(**kwargs)


@worker_process_init.connect
def _forget_inherited_connections(**_kwargs: Any) -> None:
    """A forked pool process must not share the parent's pooled database connections (the
    parent's sweeper thread uses them): drop them here without closing them. (The engine
    cache keys on the argument as given: the default engine is cached under None.)"""
    for url in (None, get_settings().resolved_database_url):
        get_engine(url).dispose(close=False)

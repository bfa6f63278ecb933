"""What a user asks Shoal to do, as functions over the flow: crawl, dedupe, import photos,
create or export a dataset version, push or pull a review round.

Each checks the request, runs its stage's jobs (:mod:`pipeline.jobs.flow`) and returns the job
rows with a summary of what they did, so the `shoal` CLI only parses and prints, and the HTTP
API can call the same functions. ``listener`` and ``watch`` are the flow's progress hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from catalog.db import check_migrated, session_scope
from catalog.models import CrawlJob, DatasetVersion, Job, JobState, Species
from catalog.species import get_species
from pipeline.errors import UsageError
from pipeline.jobs.flow import FlowRequest, Watcher, run_flow, run_jobs, submit_flow
from pipeline.jobs.runner import Listener


@dataclass
class Outcome:
    jobs: list[Job]
    result: Any = None
    failed: list[Any] = field(default_factory=list)  # parts that failed but did not stop it
    selection: Any = None  # training: how the recipe was chosen (trainer.recipe.Selection)


# --- crawl ----------------------------------------------------------------------------------
def crawl_targets(species: str | None, all_: bool, sources: list[str]) -> list[tuple[str, str]]:
    """(species slug, source) of each crawl asked for: one species or every active one, from
    the given sources or all of them."""
    from crawler.sources import UnknownSource, chosen_sources, default_sources  # Scrapy

    if bool(species) == all_:
        raise UsageError("give --species SLUG or --all (for every active species)")
    try:
        chosen = chosen_sources(sources, default_sources())
    except UnknownSource as exc:
        raise UsageError(str(exc)) from exc
    check_migrated()
    with session_scope() as session:
        if all_:
            slugs = list(session.scalars(
                select(Species.slug).where(Species.active.is_(True)).order_by(Species.id)))
            if not slugs:
                raise UsageError("no active species: add some with `shoal species add`")
        else:
            assert species is not None
            slugs = [get_species(session, species).slug]
    return [(slug, source) for slug in slugs for source in chosen]


def crawl_outcome(job: Job) -> dict[str, Any]:
    """One crawl as `shoal crawl` reports it: its crawl job's state, stats, error, warning."""
    a = job.args
    data: dict[str, Any] = {"species": a["species"], "source": a["source"], "crawl_job_id": None,
                            "state": "failed", "stats": {}, "error": first_line(job.error),
                            "warning": None}
    with session_scope() as session:
        row = session.scalar(select(CrawlJob).where(CrawlJob.job_id == job.id)
                             .order_by(CrawlJob.id.desc()).limit(1))
        if row is not None:
            data.update(crawl_job_id=row.id, state=row.state, stats=row.stats or {},
                        error=row.error, warning=row.warning, keyword=row.keyword)
    return data


def crawl(targets: list[tuple[str, str]], limit: int | None = None, *,
          listener: Listener | None = None, watch: Watcher | None = None) -> Outcome:
    """Crawl each target, then dedupe once (new images leave ``downloaded`` at once).

    A crawl that fails is recorded and reported in ``failed``; the others and dedupe go on.
    """
    done = run_flow(FlowRequest(crawls=tuple(targets), limit=limit), ("crawl", "dedupe"),
                    listener=listener, watch=watch)
    rows = [crawl_outcome(job) for job in done["crawl"]]
    [dedupe_job] = done["dedupe"]
    return Outcome([*done["crawl"], dedupe_job], {"crawls": rows, "dedupe": dedupe_job.result},
                   failed=[r for r in rows if r["state"] != JobState.SUCCEEDED])


# --- dedupe, import, datasets, review -------------------------------------------------------
def one_job(kind: str, args: dict[str, Any], *, listener: Listener | None = None,
            watch: Watcher | None = None) -> Outcome:
    """Run one job of ``kind`` (in-process or on a worker, waiting for it)."""
    check_migrated()
    [job] = run_jobs([[(kind, args)]], listener=listener, watch=watch)
    return Outcome([job], job.result)


def dedupe(args: dict[str, Any], **hooks: Any) -> Outcome:
    check_migrated()
    [job] = run_flow(FlowRequest(args={"dedupe": args}), ("dedupe",), **hooks)["dedupe"]
    return Outcome([job], job.result)


def import_photos(path: Path, species: str, **hooks: Any) -> Outcome:
    """Your own photos through the crawler's validate path: a folder every worker can read."""
    if not path.exists():
        raise UsageError(f"no such file or folder: {path}")
    return one_job("import_photos", {"path": str(path.resolve()), "species": species}, **hooks)


def create_dataset(args: dict[str, Any], **hooks: Any) -> Outcome:
    """Freeze the approved images into a new version; the result is its summary."""
    from pipeline.datasets.versions import version_summary

    check_migrated()
    [job] = run_flow(FlowRequest(args={"dataset_create": args}), ("dataset",),
                     **hooks)["dataset"]
    with session_scope() as session:
        version = session.get_one(DatasetVersion, job.result["version"])
        return Outcome([job], version_summary(version))


def export_dataset(version: str, fmt: str, out: Path, copy: bool = False,
                   **hooks: Any) -> Outcome:
    from pipeline.datasets.versions import get_version

    check_migrated()
    with session_scope() as session:
        row = get_version(session, version)
        info = {"version": row.name, "format": fmt, "n_items": row.n_items,
                "n_train": row.n_train, "n_val": row.n_val}
        args = {"version": row.id, "format": fmt, "out": str(out.resolve()), "copy": copy}
    outcome = one_job("dataset_export", args, **hooks)
    outcome.result = {**info, "out": outcome.result["path"]}
    return outcome


def first_line(text: str | None) -> str | None:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else None


# --- training -------------------------------------------------------------------------------
@dataclass
class TrainRequest:
    """`shoal train`'s question: a new run (or a sweep), or a run resumed."""

    dataset: str | None = None
    arch: str | None = None  # None: the recipe's default (trainer.plan.DEFAULT_ARCH)
    weights: str = "imagenet"
    mode: str = "frozen"
    recipe: str = "study"
    given: dict[str, Any] = field(default_factory=dict)  # hyperparameters fixed by the user
    lrs: list[float] | None = None  # several: a sweep
    folds: int = 5
    resume: int | None = None
    epochs: int | None = None  # with resume: train further


def train(req: TrainRequest, *, wait: bool | None = None, listener: Listener | None = None,
          watch: Watcher | None = None, selecting: Any = None) -> Outcome:
    """Make the runs (choosing the recipe first when asked), then one train job each.

    ``wait`` None: wait for a single run, queue a sweep. ``selecting`` is the progress callback
    of recipe selection, which runs here, before any job.
    """
    from trainer.errors import TrainingError
    from trainer.plan import default_arch, plan_runs, save_selection
    from trainer.runs import create_run, resume_run, run_dir

    check_migrated()
    selection = None
    try:
        with session_scope() as session:
            if req.resume is not None:
                run_ids = [resume_run(session, req.resume, req.epochs).id]
            else:
                if not req.dataset:
                    raise UsageError("--dataset is required (a version name or id, or a folder)")
                arch = req.arch or default_arch(req.recipe)
                plan = plan_runs(session, dataset=req.dataset, arch=arch,
                                 weights=req.weights, mode=req.mode, recipe=req.recipe,
                                 given=req.given, lrs=req.lrs, folds=req.folds,
                                 progress=selecting)
                selection = plan.selection
                run_ids = [create_run(session, dataset=req.dataset, arch=arch,
                                      weights=req.weights, mode=req.mode, lr=lr,
                                      **plan.hyper).id for lr in plan.lrs]
    except TrainingError as exc:
        raise UsageError(str(exc)) from exc
    if selection is not None:
        save_selection(selection, run_dir(run_ids[0]))
    flow = FlowRequest(runs=tuple({"run_id": run_id} for run_id in run_ids))
    if wait is None:
        wait = len(run_ids) == 1
    if not wait:
        jobs = [job for chain in submit_flow(flow, ("train",)) for job in chain]
        return Outcome(jobs, [{"run": j.args["run_id"], "job": j.id, "job_state": j.state,
                               "queued": True} for j in jobs], selection=selection)
    try:
        jobs = run_flow(flow, ("train",), listener=listener, watch=watch)["train"]
    except TrainingError as exc:  # raised again in-process: the run records it too
        raise UsageError(f"run {run_ids[0]} failed: {exc}") from exc
    return Outcome(jobs, [run_result(job.args["run_id"], selection) for job in jobs],
                   selection=selection)


def run_result(run_id: int, selection: Any = None) -> dict[str, Any]:
    from catalog.models import TrainingRun
    from trainer.runs import run_summary

    with session_scope() as session:
        run = session.get_one(TrainingRun, run_id)
        summary = run_summary(session, run)
        estimate = selection.estimate if selection is not None else None
        return {"run": run_id, "state": run.state,
                **({"recipe": selection.best, "cv_accuracy": selection.score.accuracy,
                    "honest_estimate": estimate.as_dict() if estimate else None}
                   if selection is not None else {}),
                "val_accuracy": summary["val_accuracy"],
                "val_interval": summary["val_interval"], "n_val": summary["n_val"],
                "best_val_accuracy": run.best_val_accuracy,
                "final_val_loss": run.final_val_loss,
                "train_seconds": run.train_seconds,
                "tensorboard": run.tensorboard_dir,
                "checkpoint": run.best_checkpoint_path}

"""`shoal curate`: the model's first pass (suspects, reasons, gallery) and `shoal curate
predict` (a run's predictions for catalog images)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from catalog.models import ImageStatus
from pipeline.cli.common import (
    JSON_OPTION,
    ShoalGroup,
    catalog_session,
    console,
    print_json,
    print_table,
    progress_bar,
)
from pipeline.curate import DEFAULT_FOLDS
from pipeline.curate.suspects import REASONS, SuspectQuery, list_suspects
from pipeline.errors import ShoalError

curate_app = typer.Typer(cls=ShoalGroup, invoke_without_command=True,
                         help="The model's first pass: label issues, not a fish, bad images, "
                         "copies; and predictions for catalog images.")


def _bar_progress(bar: Any) -> Any:
    tasks: dict[str, Any] = {}

    def step(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return step


@curate_app.callback()
def curate_cmd(
    ctx: typer.Context,
    run: int = typer.Option(None, "--run", "-r", help="Use this frozen training run's backbone "
                            "and framing (default: EfficientNet-Lite0, ImageNet weights)."),
    folds: int = typer.Option(DEFAULT_FOLDS, "--folds", help="Folds of the out-of-fold label "
                              "scores (cut by duplicate group)."),
    species: list[str] = typer.Option([], "--species", "-s", help="Only this species (repeat)."),
    no_quality: bool = typer.Option(False, "--no-quality", help="Skip the image-quality checks."),
    gallery: Path = typer.Option(None, "--gallery", help="Where to write the HTML gallery "
                                 "(default: <data dir>/curation/run-N.html)."),
    limit: int = typer.Option(50, "--limit", help="List at most this many suspects."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Score every image a dataset could take, link the copies pHash missed, and list the
    suspects with their reasons and suggested species (a second run over the same pool
    writes nothing)."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.curate.gallery import write_gallery
    from pipeline.curate.passes import CurateOptions, curate

    opts = CurateOptions(folds=folds, model_run_id=run, species=species or None,
                         quality=not no_quality)
    with catalog_session() as session:
        with progress_bar() as bar:
            report = curate(session, opts, progress=_bar_progress(bar))
        report.gallery = str(write_gallery(session, report.run_id, gallery))
        rows = list_suspects(session, SuspectQuery(run=report.run_id, limit=limit))["suspects"]
    if as_json:
        print_json({**report.as_dict(), "suspects_listed": rows})
        return
    verb = "unchanged since" if report.reused else "wrote"
    console.print(f"curation run {report.run_id} ({verb}): {report.pool} images, "
                  f"{report.judged} with label scores, {report.suspects} suspects ("
                  + ", ".join(f"{k} {v}" for k, v in report.reasons.items())
                  + f"); {report.copies_linked} copies linked; gallery {report.gallery}")
    if report.failed:
        console.print(f"[yellow]{len(report.failed)} images could not be read[/]")
    print_suspects(f"top {len(rows)} suspects", rows)


def print_suspects(title: str, rows: list[dict[str, Any]]) -> None:
    print_table(title, ["image", "score", "reasons", "given", "suggested"], [
        (r["image_id"], f"{r['score']:.3f}", ", ".join(r["reasons"]), r["given"] or "",
         f"{r['suggested'] or ''}"
         + (f" ({r['suggested_probability']:.2f})" if r["suggested_probability"] else ""))
        for r in rows])


@curate_app.command("suspects")
def suspects_cmd(
    run: int = typer.Option(None, "--run", "-r", help="This curation run (default: the "
                            "latest)."),
    reason: list[str] = typer.Option([], "--reason", help=f"Only suspects with this reason "
                                     f"(repeat): {', '.join(REASONS)}."),
    species: list[str] = typer.Option([], "--species", "-s", help="Only suspects filed under "
                                      "this species (repeat)."),
    suggested: list[str] = typer.Option([], "--suggested", help="Only suspects the run "
                                        "suggests this species (or verdict) for (repeat)."),
    order: str = typer.Option("desc", "--order", help="By score: desc (most doubtful first) "
                              "or asc."),
    limit: int = typer.Option(50, "--limit", min=0, help="List at most this many (0: all)."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the suspects a curation run found, without running one (as `GET /v1/suspects`)."""
    query = SuspectQuery(run=run, reasons=tuple(reason), species=tuple(species),
                         suggested=tuple(suggested), order=order,  # type: ignore[arg-type]
                         limit=limit, offset=offset)
    with catalog_session() as session:
        data = list_suspects(session, query)
    if as_json:
        print_json(data)
        return
    if data["run"] is None:
        console.print("no curation run yet: `shoal curate` makes one")
        return
    r = data["run"]
    console.print(f"curation run {r['id']}: {r['suspects']} suspects of {r['pool']} images ("
                  + ", ".join(f"{k} {v}" for k, v in r["reasons"].items()) + f"); "
                  f"{data['total']} match")
    print_suspects(f"suspects {offset + 1}-{offset + len(data['suspects'])} of {data['total']}",
                   data["suspects"])


@curate_app.command("predict")
def predict_cmd(
    run: int = typer.Option(..., "--run", "-r", help="Training run whose best model predicts."),
    status: list[str] = typer.Option([], "--status", help=f"Only images in this state "
                                     f"(repeat): {', '.join(ImageStatus.ALL)}."),
    species: list[str] = typer.Option([], "--species", "-s", help="Only this species' crawl "
                                      "keyword (repeat)."),
    version: str = typer.Option(None, "--version", help="Only the images of this dataset "
                                "version (name or id)."),
    unscored: bool = typer.Option(False, "--unscored", help="Only images this run has not "
                                  "scored yet."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Species kept per image."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the run's top-k species for catalog images into image_predictions (as a job:
    on a train worker when a broker is set, else here)."""
    from pipeline.jobs.submit import submit

    args = {"run": run, "status": status, "species": species, "version": version,
            "unscored": unscored, "top_k": top_k}
    with catalog_session():
        pass  # a clear error before a job is queued on an unmigrated catalog
    job = submit("predict", args)
    if job.state == "failed":  # the error's first line; `shoal jobs show` has the traceback
        reason = (job.error or "").strip().splitlines()[0] if job.error else "unknown"
        raise ShoalError(f"predict job {job.id} failed: {reason}")
    if as_json:
        print_json({"job": job.id, "state": job.state, "result": job.result})
        return
    if job.result:
        r = job.result
        console.print(f"run {run}: {r['predicted']} of {r['selected']} images scored (top "
                      f"{top_k}); {len(r['failed'])} unreadable; job {job.id}")
    else:
        console.print(f"predict job {job.id} queued ({job.state}); follow it with "
                      f"`shoal jobs show {job.id}`")

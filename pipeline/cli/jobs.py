"""`shoal jobs`: queued work, answered from the catalog's jobs rows (never from the broker)."""

from __future__ import annotations

import json
from typing import Any

import typer

from catalog.db import check_migrated
from catalog.models import Job, JobState
from pipeline.cli.common import (
    JSON_OPTION,
    ShoalGroup,
    catalog_session,
    console,
    print_json,
    print_table,
)
from pipeline.errors import ServiceUnavailable, UsageError
from pipeline.jobs.broker import QUEUE_OF
from pipeline.jobs.flow import EXIT_CODE_OF, crawl_chain, train_chain, where_jobs_run
from pipeline.jobs.submit import (
    cancel,
    job_detail,
    job_dict,
    list_jobs,
    retry,
    submit_chain,
)
from pipeline.jobs.sweeper import sweep

jobs_app = typer.Typer(cls=ShoalGroup, help="Queued work: list, show, cancel, submit, chains.")

ARG_OPTION = typer.Option([], "--arg", "-a", help="key=value argument (value read as JSON when "
                          "it parses: 5, true, [\"a\"]); repeatable.")


def parse_args(pairs: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, got {pair!r}")
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return args


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:80] if text and text.strip() else ""


def note(d: dict[str, Any]) -> str:
    """The error, else a crawl's warning (a succeeded crawl that looks wrong), else the message."""
    warning = (d.get("result") or {}).get("warning") if isinstance(d.get("result"), dict) else None
    return (first_line(d.get("error")) or (f"warning: {first_line(warning)}" if warning else "")
            or first_line(d.get("message")))


def report_submitted(jobs: list[Job], as_json: bool) -> None:
    if as_json:
        print_json([job_dict(j) for j in jobs])
    else:
        where = where_jobs_run()
        for job in jobs:
            tail = note(job_dict(job))
            console.print(f"job {job.id} {job.kind}: {job.state} ({where})"
                          + (f" - {tail}" if tail else ""), highlight=False)
    failed = [j for j in jobs if j.state == JobState.FAILED]
    if failed:  # a user error inside the job keeps its own exit code (2: bad arguments)
        raise typer.Exit(max(EXIT_CODE_OF.get((j.error or "").split(":", 1)[0], 1)
                             for j in failed))


@jobs_app.command("list")
def jobs_list(
    state: str = typer.Option(None, help="Only this state: queued, running, succeeded, failed, "
                              "cancelled."),
    kind: str = typer.Option(None, help="Only this kind: crawl, dedupe, review_push, ..."),
    limit: int = typer.Option(50, help="At most this many, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List jobs, newest first, with state, progress, attempts and worker."""
    with catalog_session() as session:
        data = [job_dict(j) for j in list_jobs(session, state=state, kind=kind, limit=limit)]
    if as_json:
        print_json(data)
        return
    print_table(
        f"{len(data)} jobs",
        ["id", "kind", "state", "progress", "tries", "worker", "after", "created", "note"],
        [(d["id"], d["kind"], d["state"], f"{d['progress']:.0%}", d["attempts"],
          d["worker_host"], d["parent_id"], str(d["created_at"])[:19], note(d))
         for d in data],
    )


@jobs_app.command("show")
def jobs_show(
    job_id: int = typer.Argument(..., help="Job id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Everything about one job: arguments, result, error with traceback, the jobs after it."""
    with catalog_session() as session:
        data = job_detail(session, job_id)
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        if isinstance(value, dict | list):
            value = json.dumps(value, ensure_ascii=False, default=str)
        console.print(f"[bold]{key}[/]: {'' if value is None else value}", highlight=False)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: int = typer.Argument(..., help="Job id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Cancel a queued or running job and the jobs chained after it.

    A running job stops at its next progress report."""
    ids = cancel(job_id)
    if as_json:
        print_json({"cancelled": ids})
    else:
        console.print(f"cancelled: {', '.join(map(str, ids))}")


@jobs_app.command("retry")
def jobs_retry(
    job_id: int = typer.Argument(..., help="Job id of a failed or cancelled job."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Queue a failed or cancelled job again, with the jobs cancelled after it.

    The same rows run again as a new attempt, resuming what the last one wrote."""
    report_submitted(retry(job_id), as_json)


@jobs_app.command("sweep")
def jobs_sweep(as_json: bool = JSON_OPTION) -> None:
    """Find jobs the broker lost, now: send them again, or fail them after too many tries.

    Beat and the workers do this on their own; with no broker, lost jobs run here."""
    check_migrated()
    report = sweep().as_dict()
    if as_json:
        print_json(report)
    else:
        for key in ("redispatched", "failed", "cancelled", "runs_reset"):
            console.print(f"{key.replace('_', ' ')}: {', '.join(map(str, report[key])) or '-'}",
                          highlight=False)
    if report["skipped"]:
        raise ServiceUnavailable(f"sweep stopped: {report['skipped']}")


@jobs_app.command("submit")
def jobs_submit(
    kind: str = typer.Argument(..., help=f"One of: {', '.join(QUEUE_OF)}."),
    arg: list[str] = ARG_OPTION,
    key: str = typer.Option(None, "--idempotency-key", help="Submitting the same key again "
                            "returns the first job instead of queueing another."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Queue one job (runs here and now when no broker is configured)."""
    report_submitted(submit_chain([(kind, parse_args(arg))], idempotency_key=key), as_json)


@jobs_app.command("crawl")
def jobs_crawl(
    species: str = typer.Option(..., "--species", "-s", help="Species slug."),
    source: str = typer.Option("wikimedia", help="wikimedia, inaturalist, baike, shop:<profile>"),
    limit: int = typer.Option(None, help="At most this many images."),
    review: bool = typer.Option(None, "--review/--no-review", help="End with a review push "
                                "(default: when Label Studio is configured)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The crawl chain: crawl -> dedupe -> review push."""
    report_submitted(submit_chain(crawl_chain(species, source, limit, review)), as_json)


@jobs_app.command("train")
def jobs_train(
    version: str = typer.Option(None, "--version", "-v", help="Dataset version (name or id); "
                                "omitted: create a new one first."),
    arch: str = typer.Option("resnet34", help="Model architecture."),
    mode: str = typer.Option("frozen", help="frozen (new head only) or finetune."),
    weights: str = typer.Option("imagenet", help="Initial weights."),
    hyper: list[str] = typer.Option([], "--hyper", "-p", help="key=value hyperparameter "
                                    "(epochs=10, lr=1e-4, batch_size=16); repeatable."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The training chain: [dataset create ->] train."""
    report_submitted(submit_chain(train_chain(version, arch, mode, weights, parse_args(hyper))),
                     as_json)

"""What every CLI command shares: the console, JSON output, catalog access, error mapping."""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from typer.core import TyperGroup

from catalog.db import CatalogUnavailable, check_migrated, session_scope
from catalog.models import Job, JobState
from catalog.settings import SettingsInvalid
from catalog.species import SpeciesFileError, UnknownSpecies
from pipeline.errors import ShoalError, printable
from trainer.errors import TrainingError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead.")

# exceptions a user can cause, mapped to exit codes; anything else is a bug and shows a traceback
USER_ERRORS: dict[type[BaseException], int] = {
    UnknownSpecies: 2,
    TrainingError: 2,  # what the trainer refuses: bad options, data or weights
    SpeciesFileError: 2,
    SettingsInvalid: 2,  # a SHOAL_* value out of its range or of the wrong kind
    CatalogUnavailable: 3,
}


# a file the user named that cannot be written (2), or a disk that is full or failing (1)
PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR,
               errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP}
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def exit_code_for(exc: BaseException) -> int | None:
    if isinstance(exc, ShoalError):
        return exc.exit_code
    for kind, code in USER_ERRORS.items():
        if isinstance(exc, kind):
            return code
    if _disk_full_in_database(exc):
        return 1
    if isinstance(exc, OSError) and exc.filename is not None:
        if exc.errno in PATH_ERRNOS:
            return 2
        if exc.errno in DISK_ERRNOS:
            return 1
    return None


def _disk_full_in_database(exc: BaseException) -> bool:
    """SQLite's "database or disk is full", PostgreSQL's DiskFull (SQLSTATE 53100)."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    return "disk is full" in str(orig) or getattr(orig, "sqlstate", None) == "53100"


def describe(exc: BaseException) -> str:
    """The one line shown for a user error: an OSError as ``reason: path``, the path being
    the one written to (a copy's or rename's destination)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {printable(str(exc.filename2 or exc.filename))}"
    if _disk_full_in_database(exc):
        return f"the catalog database could not be written: {str(exc.orig).strip()}"  # type: ignore[attr-defined]
    return printable(str(exc))


def verbatim(value: Any) -> Text:
    """A value shown as it is: no rich markup read from it (a file named ``[bold]x.jpg``)."""
    return Text("" if value is None else printable(str(value)))


class ShoalGroup(TyperGroup):
    """Turns user errors raised anywhere below into a red message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            code = exit_code_for(exc)
            if code is None:
                raise
            err_console.print(f"[bold red]error:[/] {escape(describe(exc))}", highlight=False)
            raise typer.Exit(code) from exc


@contextmanager
def catalog_session() -> Iterator[Session]:
    """A committed-on-success session over a migrated catalog (clear error when it is not)."""
    check_migrated()
    with session_scope() as session:
        yield session


def print_json(data: Any) -> None:
    """``data`` as JSON, valid UTF-8 whatever it holds: a file name's non-UTF-8 bytes (kept by
    Python as surrogates) are written as ``\\xNN``, escaped like any backslash."""
    sys.stdout.write(json.dumps(_printable(data), ensure_ascii=False, indent=2,
                                default=lambda value: printable(str(value))) + "\n")


def _printable(data: Any) -> Any:
    if isinstance(data, str):
        return printable(data)
    if isinstance(data, dict):
        return {_printable(k): _printable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_printable(v) for v in data]
    return data


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, header_style="bold")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[verbatim(v) for v in row])
    console.print(table)


def progress_bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


STEP_LABELS = {"features": "backbone features", "train": "training batch", "epoch": "epochs",
               "cross-validation": "recipes cross-validated", "images": "images",
               "files": "files"}


def job_label(kind: str, args: dict[str, Any]) -> str:
    if kind == "crawl":
        return f"{args.get('species')} · {args.get('source')}"
    if kind == "train" and args.get("run_id"):
        return f"run {args['run_id']}"
    return kind.replace("_", " ")


class JobBars:
    """Rich progress bars for jobs: fed by their bodies' steps when they run in this process
    (``step``, a runner Listener), or by their polled rows when workers run them (``row``)."""

    def __init__(self, bar: Progress,
                 label: Callable[[str, dict[str, Any]], str] = job_label) -> None:
        self.bar, self.label = bar, label
        self.tasks: dict[tuple[int, str], Any] = {}

    def step(self, ctx: Any, stage: str, done: int, total: int) -> None:
        key = (ctx.job_id, stage)
        if key not in self.tasks:
            name = self.label(ctx.kind, ctx.args)
            what = STEP_LABELS.get(stage, stage)
            self.tasks[key] = self.bar.add_task(
                name if what in ("images", "files") else f"{name}: {what}", total=total or None)
        self.bar.update(self.tasks[key], completed=done, total=total or None)

    def row(self, job: Job) -> None:
        steps = [t for (job_id, stage), t in self.tasks.items() if job_id == job.id and stage]
        if steps:  # it ran here and its bars followed its body: close them at what was done
            if job.state in JobState.FINISHED:
                for task in steps:
                    self.bar.update(task, total=self.bar.tasks[task].completed)
            return
        key = (job.id, "")
        if key not in self.tasks:
            self.tasks[key] = self.bar.add_task(self.label(job.kind, job.args), total=100)
        note = f" ({job.state}{': ' + job.message if job.message else ''})"
        self.bar.update(self.tasks[key], completed=round(100 * (job.progress or 0.0)),
                        description=self.label(job.kind, job.args) + note)

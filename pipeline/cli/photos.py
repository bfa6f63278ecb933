"""`shoal import`: your own photos into the catalog."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from pipeline.cli.common import (
    JSON_OPTION,
    JobBars,
    console,
    print_json,
    progress_bar,
    verbatim,
)
from pipeline.errors import printable
from pipeline.jobs.actions import import_photos


def import_cmd(
    directory: Path = typer.Argument(..., help="Folder (searched recursively) or one file."),
    species: str = typer.Option(..., "--species", "-s", help="Slug of the species shown."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Ingest your own photos: validated, normalised, hashed and stored like crawled ones."""
    with progress_bar() as bar:
        label = f"importing {escape(printable(str(directory)))}"
        bars = JobBars(bar, label=lambda _kind, _args: label)
        report = import_photos(directory, species, listener=bars.step, watch=bars.row).result
    if as_json:
        print_json(report)
        return
    skipped = sum(report.get("skipped", {}).values())
    console.print(
        f"{report['files']} files: [green]{report['new']} new[/], {report['existing']} already "
        f"known, [yellow]{report['rejected']} rejected[/]"
        + (f", {skipped} skipped ({_reasons(report['skipped'])})" if skipped else "")
    )
    if report["rejected_files"]:
        print_rejected(report["rejected_files"])


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


def print_rejected(rejected: list[dict[str, str]]) -> None:
    """Each refused file on a line of its own, whole and relative to the folder given (a
    table would cut long names to fit the terminal), then its reason and detail indented."""
    console.print(f"rejected ({len(rejected)}):", style="bold")
    for f in rejected:
        console.print(verbatim(f"  {f['file']}"))
        console.print(verbatim(f"    {f['reason']}: {f['detail']}" if f["detail"]
                               else f"    {f['reason']}"), style="yellow")

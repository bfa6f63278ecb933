"""`shoal import`: your own photos into the catalog."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli.common import (
    JSON_OPTION,
    JobBars,
    console,
    print_json,
    print_table,
    progress_bar,
)
from pipeline.jobs.actions import import_photos


def import_cmd(
    directory: Path = typer.Argument(..., help="Folder (searched recursively) or one file."),
    species: str = typer.Option(..., "--species", "-s", help="Slug of the species shown."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Ingest your own photos: validated, normalised, hashed and stored like crawled ones."""
    with progress_bar() as bar:
        bars = JobBars(bar, label=lambda _kind, _args: f"importing {directory}")
        report = import_photos(directory, species, listener=bars.step, watch=bars.row).result
    if as_json:
        print_json(report)
        return
    console.print(
        f"{report['files']} files: [green]{report['new']} new[/], {report['existing']} already "
        f"known, [yellow]{report['rejected']} rejected[/]"
    )
    if report["rejected_files"]:
        print_table("rejected", ["file", "reason", "detail"],
                    [(f["file"], f["reason"], f["detail"]) for f in report["rejected_files"]])

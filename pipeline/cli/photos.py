"""`shoal import`: your own photos into the catalog."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from catalog.limits import limits_from_settings
from catalog.settings import get_settings
from catalog.species import (
    get_species,
)
from catalog.store import ImageStore
from pipeline.cli.common import (
    JSON_OPTION,
    catalog_session,
    console,
    print_json,
    progress_bar,
    verbatim,
)
from pipeline.errors import UsageError, printable
from pipeline.importer import ImportReport, import_scan, scan


def import_cmd(
    directory: Path = typer.Argument(..., help="Folder (searched recursively) or one file."),
    species: str = typer.Option(..., "--species", "-s", help="Slug of the species shown."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Ingest your own photos: validated, normalised, hashed and stored like crawled ones."""
    if not directory.exists():
        raise UsageError(f"no such file or folder: {directory}")
    settings = get_settings()
    store = ImageStore(settings.image_dir)
    with catalog_session() as session:
        species_id = get_species(session, species).id
        found = scan(directory)
        with progress_bar() as bar:
            task = bar.add_task(f"importing {escape(printable(str(directory)))}",
                                total=len(found.files))
            report = import_scan(
                session, store, found, species_id, limits_from_settings(settings),
                on_file=lambda _p: bar.advance(task),
            )
    if as_json:
        print_json(report.as_dict())
        return
    skipped = sum(report.skipped.values())
    console.print(
        f"{report.files} files: [green]{report.new} new[/], {report.existing} already known, "
        f"[yellow]{report.rejected} rejected[/]"
        + (f", {skipped} skipped ({_reasons(report.skipped)})" if skipped else "")
    )
    if report.rejected_files:
        print_rejected(report)


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


def print_rejected(report: ImportReport) -> None:
    """Each refused file on a line of its own, whole and relative to the folder given (a
    table would cut long names to fit the terminal), then its reason and detail indented."""
    console.print(f"rejected ({len(report.rejected_files)}):", style="bold")
    for name, reason, detail in report.rejected_files:
        console.print(verbatim(f"  {name}"))
        console.print(verbatim(f"    {reason}: {detail}" if detail else f"    {reason}"),
                      style="yellow")

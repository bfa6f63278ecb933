"""`shoal import`: your own photos into the catalog."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

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
        console.print(rejected_table(report))


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


def rejected_table(report: ImportReport) -> Table:
    """File names whole (relative to the folder given, folded only if wider than the
    terminal): the detail column gives way first."""
    table = Table(title="rejected", header_style="bold")
    table.add_column("file", no_wrap=True, overflow="fold",
                     min_width=min(max(len(f) for f, _, _ in report.rejected_files), 60))
    table.add_column("reason", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for row in report.rejected_files:
        table.add_row(*map(verbatim, row))
    return table

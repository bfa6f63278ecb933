"""`shoal import`: your own photos into the catalog."""

from __future__ import annotations

from pathlib import Path

import typer

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
    print_table,
    progress_bar,
)
from pipeline.errors import UsageError
from pipeline.importer import import_files, list_files


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
        files = list_files(directory)
        with progress_bar() as bar:
            task = bar.add_task(f"importing {directory}", total=len(files))
            report = import_files(
                session, store, files, species_id, limits_from_settings(settings),
                on_file=lambda _p: bar.advance(task),
            )
    if as_json:
        print_json(report.as_dict())
        return
    console.print(
        f"{report.files} files: [green]{report.new} new[/], {report.existing} already known, "
        f"[yellow]{report.rejected} rejected[/]"
    )
    if report.rejected_files:
        print_table("rejected", ["file", "reason", "detail"], report.rejected_files)



"""`shoal db`, `shoal species`, `shoal import`, `shoal config`."""

from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import func, select

from catalog.db import current_revision, session_scope, upgrade
from catalog.limits import limits_from_settings
from catalog.models import Image, Species
from catalog.settings import get_settings, mask_secret, mask_url
from catalog.species import (
    SpeciesSpec,
    ensure_default_species,
    get_species,
    load_species_file,
    upsert_species,
)
from catalog.store import ImageStore
from pipeline.cli.common import (
    JSON_OPTION,
    ShoalGroup,
    catalog_session,
    console,
    print_json,
    print_table,
    progress_bar,
)
from pipeline.errors import UsageError
from pipeline.importer import import_files, list_files

db_app = typer.Typer(cls=ShoalGroup, help="Create and upgrade the catalog schema.")
species_app = typer.Typer(cls=ShoalGroup, help="The species registry: list, add, import.")


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", help="Alembic revision to upgrade to."),
    no_defaults: bool = typer.Option(False, help="Do not load the 30 default species."),
) -> None:
    """Create or upgrade the schema; an empty registry gets the default species."""
    url = get_settings().resolved_database_url
    upgrade(url, revision)
    added = 0
    if not no_defaults and revision == "head":
        with session_scope() as session:
            added = ensure_default_species(session)
    console.print(f"catalog {mask_url(url)} at revision {current_revision(url)}"
                  + (f"; loaded {added} default species" if added else ""))


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision of the catalog."""
    console.print(current_revision() or "empty (run `shoal db upgrade`)")


@species_app.command("list")
def species_list(
    all_: bool = typer.Option(False, "--all", help="Include inactive species."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the species with their names, keywords and image counts."""
    with catalog_session() as session:
        counts = dict(
            session.execute(
                select(Image.expected_species_id, func.count()).group_by(Image.expected_species_id)
            ).all()
        )
        query = select(Species).order_by(Species.id)
        if not all_:
            query = query.where(Species.active.is_(True))
        rows = session.scalars(query).all()
        data = [
            {
                "slug": s.slug,
                "latin_name": s.latin_name,
                "name_zh": s.name_zh,
                "name_en": s.name_en,
                "keywords": s.keywords,
                "active": s.active,
                "images": counts.get(s.id, 0),
            }
            for s in rows
        ]
    if as_json:
        print_json(data)
        return
    print_table(
        f"{len(data)} species",
        ["slug", "latin", "中文", "english", "images"],
        [(d["slug"], d["latin_name"], d["name_zh"], d["name_en"], d["images"]) for d in data],
    )


@species_app.command("add")
def species_add(
    slug: str = typer.Argument(..., help="Identifier: lower-case letters, digits and dashes."),
    latin: str = typer.Option(..., "--latin", help="Scientific name."),
    zh: str = typer.Option(None, "--zh", help="Chinese name."),
    en: str = typer.Option(None, "--en", help="English name."),
    keyword: list[str] = typer.Option([], "--keyword", "-k", help="Extra search keyword."),
    inactive: bool = typer.Option(False, help="Register without crawling it."),
) -> None:
    """Add a species, or update the one with this slug."""
    keywords = {"la": [latin]}
    if en:
        keywords["en"] = [en]
    if zh:
        keywords["zh"] = [zh]
    if keyword:
        keywords["extra"] = list(keyword)
    try:
        spec = SpeciesSpec(slug=slug, latin_name=latin, name_zh=zh, name_en=en,
                           keywords=keywords, active=not inactive)
    except ValueError as exc:
        raise UsageError(f"invalid species: {exc}") from exc
    with catalog_session() as session:
        added, updated = upsert_species(session, [spec])
    console.print(f"{'added' if added else 'updated' if updated else 'unchanged'}: {slug}")


@species_app.command("import")
def species_import(
    file: Path = typer.Argument(..., help="YAML file with a 'species:' list."),
) -> None:
    """Add or update species from a YAML file (the shape of the shipped default list)."""
    specs = load_species_file(file)
    with catalog_session() as session:
        added, updated = upsert_species(session, specs)
    console.print(f"{len(specs)} species in {file}: {added} added, {updated} updated")


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


def config_cmd(as_json: bool = JSON_OPTION) -> None:
    """Print the settings in force (secrets masked)."""
    s = get_settings()
    data = {
        "SHOAL_DATA_DIR": str(s.data_dir),
        "SHOAL_DATABASE_URL": mask_url(s.resolved_database_url),
        "SHOAL_BROKER_URL": mask_url(s.broker_url) if s.broker_url else "(in-process)",
        "SHOAL_RESULT_BACKEND": mask_url(s.result_backend) if s.result_backend else "",
        "SHOAL_LABEL_STUDIO_URL": s.label_studio_url or "",
        "SHOAL_LABEL_STUDIO_TOKEN": mask_secret(
            s.label_studio_token.get_secret_value() if s.label_studio_token else None
        ),
        "SHOAL_WEBHOOK_SECRET": mask_secret(
            s.webhook_secret.get_secret_value() if s.webhook_secret else None
        ),
        "SHOAL_MAX_LONG_SIDE": s.max_long_side,
        "SHOAL_MIN_SIDE": s.min_side,
        "SHOAL_MAX_PIXELS": s.max_pixels,
        "SHOAL_MAX_BYTES": s.max_bytes,
        "SHOAL_JPEG_QUALITY": s.jpeg_quality,
    }
    if as_json:
        print_json(data)
        return
    print_table("settings", ["name", "value"], list(data.items()))

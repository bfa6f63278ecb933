"""`shoal species list|add|import`."""

from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import func, select

from catalog.models import Image, Species
from catalog.species import (
    SpeciesSpec,
    load_species_file,
    upsert_species,
)
from pipeline.cli.common import (
    JSON_OPTION,
    ShoalGroup,
    catalog_session,
    console,
    print_json,
    print_table,
)
from pipeline.errors import UsageError

species_app = typer.Typer(cls=ShoalGroup, help="The species registry: list, add, import.")


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



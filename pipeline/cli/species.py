"""`shoal species list|add|import`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    err_console,
    print_json,
    print_table,
)
from pipeline.errors import ShoalError, UsageError

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
                "taxon_status": s.taxon_status,
                "accepted_name": s.accepted_name,
                "synonyms": s.synonyms or [],
                "taxon_class": s.taxon_class,
                "gbif_key": s.gbif_key,
                "images": counts.get(s.id, 0),
            }
            for s in rows
        ]
    if as_json:
        print_json(data)
        return
    print_table(
        f"{len(data)} species",
        ["slug", "latin", "中文", "english", "class", "images"],
        [(d["slug"], d["latin_name"], d["name_zh"], d["name_en"],
          d["taxon_class"] or d["taxon_status"] or "", d["images"]) for d in data],
    )


NO_RESOLVE = typer.Option(False, "--no-resolve", help="Do not ask GBIF (offline): the "
                          "species is recorded as unresolved and its name is not checked.")
FORCE = typer.Option(False, "--force", help="Register a name that is no fish species (or that "
                     "GBIF does not know) anyway, marked not_fish.")


def resolve_specs(specs: list[SpeciesSpec], *, no_resolve: bool, force: bool
                  ) -> tuple[list[SpeciesSpec], list[str], list[str]]:
    """Each spec with its taxonomy filled from GBIF; returns (kept, refused, warnings)."""
    from crawler.taxonomy import ResolutionFailed, resolve_name, taxon_fields

    if no_resolve:
        return [s.model_copy(update={"taxon_status": "unresolved"}) for s in specs], [], []
    kept, refused, warnings = [], [], []
    for spec in specs:
        try:
            taxon = resolve_name(spec.latin_name)
        except ResolutionFailed as exc:
            raise ShoalError(f"cannot resolve {spec.latin_name!r}: {exc}; to register species "
                             "without resolution (marked unresolved) pass --no-resolve",
                             exit_code=3) from exc
        problems = taxon.refusals()
        warnings += [f"{spec.slug}: {w}" for w in taxon.warnings()]
        if problems and not force:
            refused.append(f"{spec.slug}: " + "; ".join(problems))
            continue
        if problems:
            warnings += [f"{spec.slug}: {p} (registered anyway: --force)" for p in problems]
        fields = taxon_fields(taxon)
        if problems:
            fields["taxon_status"] = "not_fish"
        kept.append(spec.model_copy(update=fields))
    return kept, refused, warnings


def _report(specs: list[SpeciesSpec], refused: list[str], warnings: list[str],
            outcome: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json({**outcome, "refused": refused, "warnings": warnings,
                    "species": [s.model_dump() for s in specs]})
    else:
        for line in warnings:
            err_console.print(f"[yellow]warning:[/] {line}", highlight=False)
        for s in specs:
            if s.taxon_status == "unresolved":
                continue
            syn = f", synonyms: {', '.join(s.synonyms)}" if s.synonyms else ""
            console.print(f"{s.slug}: {s.accepted_name} ({s.taxon_class or 'class unknown'}, "
                          f"{s.taxon_order or '?'}; GBIF {s.gbif_key}, {s.taxon_match}{syn})",
                          highlight=False)
    if refused:
        raise ShoalError("refused: " + " | ".join(refused)
                         + " (no fish species; --force registers it anyway)", exit_code=2)


@species_app.command("add")
def species_add(
    slug: str = typer.Argument(..., help="Identifier: lower-case letters, digits and dashes."),
    latin: str = typer.Option(..., "--latin", help="Scientific name."),
    zh: str = typer.Option(None, "--zh", help="Chinese name."),
    en: str = typer.Option(None, "--en", help="English name."),
    keyword: list[str] = typer.Option([], "--keyword", "-k", help="Extra search keyword."),
    inactive: bool = typer.Option(False, help="Register without crawling it."),
    no_resolve: bool = NO_RESOLVE,
    force: bool = FORCE,
    as_json: bool = JSON_OPTION,
) -> None:
    """Add a species, or update the one with this slug. The Latin name is resolved against
    GBIF's backbone (accepted name, synonyms, class); a name that is no fish is refused."""
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
    kept, refused, warnings = resolve_specs([spec], no_resolve=no_resolve, force=force)
    added = updated = 0
    if kept:
        with catalog_session() as session:
            added, updated = upsert_species(session, kept)
    outcome = "added" if added else "updated" if updated else "refused" if refused else "unchanged"
    if not as_json and not refused:
        console.print(f"{outcome}: {slug}" + (" (unresolved)" if no_resolve else ""))
    _report(kept, refused, warnings, {"outcome": outcome}, as_json)


@species_app.command("import")
def species_import(
    file: Path = typer.Argument(..., help="YAML file with a 'species:' list."),
    no_resolve: bool = NO_RESOLVE,
    force: bool = FORCE,
    as_json: bool = JSON_OPTION,
) -> None:
    """Add or update species from a YAML file (the shape of the shipped default list); each
    name is resolved against GBIF, and names that are no fish are left out (exit code 2)."""
    specs = load_species_file(file)
    kept, refused, warnings = resolve_specs(specs, no_resolve=no_resolve, force=force)
    added = updated = 0
    if kept:
        with catalog_session() as session:
            added, updated = upsert_species(session, kept)
    if not as_json:
        console.print(f"{len(specs)} species in {file}: {added} added, {updated} updated"
                      + (f", {len(refused)} refused" if refused else ""))
    _report(kept, refused, warnings, {"added": added, "updated": updated}, as_json)

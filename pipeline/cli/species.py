"""`shoal species list|add|import`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from catalog.species import (
    SpeciesSpec,
    list_species,
    load_species_file,
    spec_from_names,
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
from pipeline.species import resolve_specs

species_app = typer.Typer(cls=ShoalGroup, help="The species registry: list, add, import.")


@species_app.command("list")
def species_list(
    all_: bool = typer.Option(False, "--all", help="Include inactive species."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the species with their names, keywords and image counts."""
    with catalog_session() as session:
        data = list_species(session, include_inactive=all_)
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
    try:
        spec = spec_from_names(slug, latin, zh, en, list(keyword), active=not inactive)
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

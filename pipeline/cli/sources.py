"""`shoal sources list|check`: the configured sources and the health of their parsing."""

from __future__ import annotations

import typer
from sqlalchemy import select

from catalog.models import Species
from catalog.species import get_species
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

sources_app = typer.Typer(cls=ShoalGroup, help="The crawl sources: list, check their parsing.")


@sources_app.command("list")
def sources_list(as_json: bool = JSON_OPTION) -> None:
    """List the sources a crawl can use (site profiles included)."""
    from crawler.sources import all_sources

    names = all_sources()
    if as_json:
        print_json(names)
    else:
        print_table(f"{len(names)} sources", ["source"], [(n,) for n in names])


@sources_app.command("check")
def sources_check(
    species: str = typer.Option(None, "--species", "-s", help="Species to query (default: the "
                                "first active one)."),
    source: list[str] = typer.Option([], "--source", help="Only this source (repeatable)."),
    limit: int = typer.Option(3, "--limit", min=1, help="Images to find per source."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run one small query per source (nothing is downloaded or stored) and report whether its
    pages still parse: ok, warning (pages answered but yielded no image, or most results were
    dropped) or failed (no page could be fetched). Exit code 1 unless every source is ok."""
    from crawler.check import check_sources
    from crawler.crawl_process import species_arguments
    from crawler.sources import UnknownSource, all_sources, chosen_sources

    try:
        chosen = chosen_sources(source, all_sources())
    except UnknownSource as exc:
        raise UsageError(str(exc)) from exc
    with catalog_session() as session:
        if species:
            row = get_species(session, species)
        else:
            row = session.scalars(select(Species).where(Species.active.is_(True))
                                  .order_by(Species.id).limit(1)).first()
            if row is None:
                raise UsageError("no active species to query: give --species SLUG")
        args = species_arguments(row)
    try:
        reports = check_sources(args, chosen, limit)
    except RuntimeError as exc:
        raise ShoalError(str(exc)) from exc
    if as_json:
        print_json({"species": args["slug"], "sources": reports})
    else:
        print_table(f"{len(reports)} sources, queried for {args['slug']}",
                    ["source", "health", "pages", "images", "dropped", "why / first image"],
                    [(r["source"], r["health"], r["pages"], r["images_found"],
                      ", ".join(f"{k} {v}" for k, v in r["skipped"].items()),
                      (r["error"] or "; ".join(r["warnings"]) or (r["sample"] or [""])[0])[:90])
                     for r in reports])
    bad = [r for r in reports if r["health"] != "ok"]
    if bad:
        if not as_json:
            err_console.print(f"{len(bad)} of {len(reports)} sources need a look", style="yellow")
        raise typer.Exit(1)
    if not as_json:
        console.print("every source parses")

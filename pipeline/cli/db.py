"""`shoal db upgrade|current`."""

from __future__ import annotations

import typer

from catalog.db import current_revision, session_scope, upgrade
from catalog.settings import get_settings, mask_url
from catalog.species import (
    ensure_default_species,
)
from pipeline.cli.common import (
    ShoalGroup,
    console,
)

db_app = typer.Typer(cls=ShoalGroup, help="Create and upgrade the catalog schema.")


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



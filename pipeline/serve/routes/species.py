"""Species and their keywords: `shoal species list|add`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from catalog.db import session_scope
from catalog.species import get_species, list_species, spec_from_names, upsert_species
from pipeline.serve.deps import READ, WRITE
from pipeline.serve.errors import ApiError
from pipeline.serve.schemas import ERRORS
from pipeline.species import resolve_specs

router = APIRouter(prefix="/v1/species", tags=["species"], responses=ERRORS)


class SpeciesIn(BaseModel):
    latin_name: str = Field(..., min_length=1, max_length=128)
    name_zh: str | None = Field(None, max_length=64)
    name_en: str | None = Field(None, max_length=128)
    keywords: list[str] = Field([], description="Extra search keywords.", max_length=50)
    active: bool = True


@router.get("", dependencies=READ)
def species_list(all: bool = Query(False, description="Include inactive species.")
                 ) -> list[dict[str, Any]]:
    """The registry: slug, Latin, Chinese and English names, keywords, image counts."""
    with session_scope() as session:
        return list_species(session, include_inactive=all)


@router.get("/{slug}", dependencies=READ)
def species_show(slug: str) -> dict[str, Any]:
    with session_scope() as session:
        found = get_species(session, slug)
        return next(s for s in list_species(session, include_inactive=True)
                    if s["slug"] == found.slug)


@router.put("/{slug}", dependencies=WRITE)
def species_put(
    slug: str, body: SpeciesIn,
    resolve: bool = Query(True, description="Resolve the Latin name against GBIF's backbone "
                          "(false: registered as unresolved)."),
    force: bool = Query(False, description="Register a name GBIF says is no fish species."),
) -> dict[str, Any]:
    """Add a species, or update the one with this slug (as `shoal species add`)."""
    try:
        spec = spec_from_names(slug, body.latin_name, body.name_zh, body.name_en,
                               body.keywords, active=body.active)
    except ValueError as exc:
        raise ApiError(422, "invalid_species", f"invalid species: {exc}") from exc
    kept, refused, warnings = resolve_specs([spec], no_resolve=not resolve, force=force)
    if refused:
        raise ApiError(422, "not_a_fish", "refused: " + " | ".join(refused)
                       + " (no fish species; force=true registers it anyway)")
    with session_scope() as session:
        added, updated = upsert_species(session, kept)
    outcome = "added" if added else "updated" if updated else "unchanged"
    return {"slug": slug, "result": outcome, "warnings": warnings}

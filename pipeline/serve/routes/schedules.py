"""Crawl schedules: `shoal schedule set|list|remove`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from catalog.db import session_scope
from pipeline.jobs.schedules import list_schedules, parse_every, remove_schedules, set_schedule
from pipeline.serve.deps import READ, WRITE
from pipeline.serve.schemas import ERRORS

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=ERRORS)


class ScheduleIn(BaseModel):
    species: str = Field(..., min_length=1, max_length=64)
    every: str = Field(..., description="Interval: 7d, 12h, 1d12h, 90m.", max_length=32)
    sources: list[str] = Field([], description="Default: wikimedia.", max_length=20)
    limit: int | None = Field(None, ge=1, le=1_000_000)


@router.get("", dependencies=READ)
def schedules_list() -> list[dict[str, Any]]:
    """Every schedule with its next and last run."""
    with session_scope() as session:
        return list_schedules(session)


@router.put("", dependencies=WRITE)
def schedules_set(body: ScheduleIn) -> list[dict[str, Any]]:
    """Create or change a species' schedule; a new one is due at once."""
    seconds = parse_every(body.every)
    with session_scope() as session:
        ids = {r.id for r in set_schedule(session, body.species, list(body.sources), seconds,
                                          body.limit)}
        return [d for d in list_schedules(session) if d["id"] in ids]


@router.delete("/{species}", dependencies=WRITE)
def schedules_remove(species: str, source: list[str] = Query([], description="Only these.")
                     ) -> dict[str, Any]:
    """Remove a species' schedules (its past jobs stay)."""
    with session_scope() as session:
        return {"species": species, "removed": remove_schedules(session, species, source)}

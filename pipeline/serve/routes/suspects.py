"""Curation suspects: `shoal curate suspects` and one image's suspicion, over the functions
the CLI calls (``pipeline.curate.suspects``). A new pass is a job: ``POST /v1/jobs/curate``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from catalog.db import session_scope
from pipeline.curate.suspects import REASONS, Order, SuspectQuery, image_suspicion, list_suspects
from pipeline.serve.deps import READ
from pipeline.serve.routes.images import Sha256
from pipeline.serve.schemas import ERRORS, MAX_ID

router = APIRouter(prefix="/v1", tags=["suspects"], dependencies=READ, responses=ERRORS)
RunParam = Annotated[int | None, Query(ge=1, le=MAX_ID, description="Curation run (default: "
                                       "the latest).")]
Label = Annotated[str, Query(min_length=1, max_length=64)]


@router.get("/suspects")
def suspects_list(
    run: RunParam = None,
    reason: list[str] = Query([], max_length=len(REASONS), description=f"Any of these "
                              f"reasons: {', '.join(REASONS)}."),
    species: list[Label] = Query([], max_length=1000, description="Filed under any of these "
                                 "species (the given label)."),
    suggested: list[Label] = Query([], max_length=1000, description="Suggested as any of "
                                   "these species or verdicts (not-a-fish, bad-image)."),
    order: Order = Query("desc", description="By score: desc, most doubtful first; or asc."),
    limit: int = Query(50, ge=0, le=10_000, description="0: every match."),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> dict[str, Any]:
    """A curation run's suspects (as `shoal curate suspects --json`): the run with its counts
    by reason, how many match, and a page of them with score, reasons, given and suggested
    species and their out-of-fold probabilities."""
    query = SuspectQuery(run=run, reasons=tuple(reason), species=tuple(species),
                         suggested=tuple(suggested), order=order, limit=limit, offset=offset)
    with session_scope() as session:
        return list_suspects(session, query)


@router.get("/images/{sha256}/suspicion")
def image_suspicion_show(sha256: Sha256, run: RunParam = None) -> dict[str, Any]:
    """One image's suspicion, suspect or not (every image of a run's pool has one), in the
    run asked for or the latest that scored it; ``runs`` lists every run that did."""
    with session_scope() as session:
        return image_suspicion(session, sha256, run)

"""Training runs: `shoal runs list|show|compare|promote`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from catalog.db import session_scope
from pipeline.serve.deps import READ, WRITE
from pipeline.serve.schemas import ERRORS, Id, QueryId
from trainer.runs import (
    compare_runs,
    list_runs,
    promote_run,
    promoted_run_id,
    run_detail,
    serving_run,
)

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=ERRORS)


class PromoteIn(BaseModel):
    note: str | None = Field(None, max_length=1000)


@router.get("", dependencies=READ)
def runs_list(limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
    """Recent runs, newest first: arch, epochs, best val accuracy, final val loss, time."""
    with session_scope() as session:
        return list_runs(session, limit)


@router.get("/compare", dependencies=READ)
def runs_compare(ids: list[QueryId] = Query([], description="Runs (default: every scored "
                                           "one).")) -> list[dict[str, Any]]:
    """Runs side by side, best validation accuracy first."""
    with session_scope() as session:
        return compare_runs(session, ids or None)


@router.get("/serving", dependencies=READ)
def runs_serving() -> dict[str, Any]:
    """The run predictions come from, and whether it was promoted or is the best one."""
    with session_scope() as session:
        pinned = promoted_run_id(session)
        return {"run_id": serving_run(session).id, "promoted": pinned is not None}


@router.get("/{run_id}", dependencies=READ)
def runs_show(run_id: Id) -> dict[str, Any]:
    """One run: settings, every epoch, per-class precision/recall/F1, confusion matrix."""
    with session_scope() as session:
        return run_detail(session, run_id)


@router.post("/{run_id}/promote", dependencies=WRITE)
def runs_promote(run_id: Id, body: PromoteIn | None = None) -> dict[str, Any]:
    """Pin the run predictions come from; every replica follows within seconds."""
    with session_scope() as session:
        row = promote_run(session, run_id, body.note if body else None)
        return {"run": row.run_id, "promoted_at": row.created_at, "note": row.note}

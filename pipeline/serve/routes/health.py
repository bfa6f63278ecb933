"""`GET /v1/health`: the process is up; which models it keeps warm and how they batched."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    return {"status": "ok", "models": request.app.state.models.stats()}

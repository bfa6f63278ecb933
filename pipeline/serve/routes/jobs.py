"""Jobs: `shoal jobs list|show|cancel|crawl|train`, `shoal dataset create` and `shoal curate`
as jobs, with live progress as server-sent events (or by polling `GET /v1/jobs/{id}`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from catalog.db import session_scope
from catalog.models import JobState
from catalog.species import get_species
from pipeline.errors import UsageError
from pipeline.jobs.flow import crawl_chain, curate_chain, train_chain
from pipeline.jobs.submit import (
    Step,
    cancel,
    job_detail,
    job_dict,
    list_jobs,
    submit_chain,
)
from pipeline.serve.deps import READ, WRITE
from pipeline.serve.schemas import ERRORS, MAX_ID, Id
from trainer.registry import get_arch

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)
POLL_S = 1.0
KEY = Header(None, alias="Idempotency-Key", max_length=100,
             description="The same key again returns the first jobs instead of new ones.")


class CrawlIn(BaseModel):
    species: str = Field(..., min_length=1, max_length=64)
    source: str = Field("wikimedia", max_length=64,
                        description="wikimedia, inaturalist, baike, shop:<profile>")
    limit: int | None = Field(None, ge=1, le=1_000_000)
    review: bool | None = Field(None, description="End with a review push (default: when "
                                "Label Studio is configured).")


class TrainIn(BaseModel):
    version: str | None = Field(None, max_length=128,
                                description="Dataset version; omitted: create one first.")
    arch: str = Field("resnet34", max_length=64)
    mode: str = Field("frozen", max_length=16)
    weights: str = Field("imagenet", max_length=64)
    hyper: dict[str, float | int | str | bool] = Field({}, max_length=30)


class DatasetCreateIn(BaseModel):
    name: str | None = Field(None, max_length=128)
    species: list[str] | None = Field(None, max_length=1000)
    min_per_class: int = Field(1, ge=1, le=1_000_000)
    val_ratio: float = Field(0.1, gt=0, lt=1)


class CurateIn(BaseModel):
    run: int | None = Field(None, ge=1, le=MAX_ID, description="A frozen training run whose "
                            "backbone and framing curation uses (default: EfficientNet-Lite0, "
                            "ImageNet weights).")
    folds: int | None = Field(None, ge=2, le=100, description="Folds of the out-of-fold "
                              "label scores, cut by duplicate group (default: 5).")
    species: list[str] | None = Field(None, max_length=1000, description="Only these species.")
    quality: bool = Field(True, description="Run the image-quality checks.")


def _submit(steps: list[Step], key: str | None) -> list[dict[str, Any]]:
    return [job_dict(j) for j in submit_chain(steps, idempotency_key=key, wait=False)]


@router.get("", dependencies=READ)
def jobs_list(state: str | None = Query(None, max_length=16),
              kind: str | None = Query(None, max_length=32),
              limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
    """Jobs, newest first, with state, progress, attempts and worker."""
    with session_scope() as session:
        return [job_dict(j) for j in list_jobs(session, state=state, kind=kind, limit=limit)]


@router.get("/{job_id}", dependencies=READ)
def jobs_show(job_id: Id) -> dict[str, Any]:
    """One job: arguments, progress, result, error, the jobs chained after it."""
    with session_scope() as session:
        return job_detail(session, job_id)


def _snapshot(job_id: int) -> dict[str, Any]:
    with session_scope() as session:
        return job_detail(session, job_id)


@router.get("/{job_id}/events", dependencies=READ,
            responses={200: {"content": {"text/event-stream": {}}}})
async def jobs_events(job_id: Id, request: Request) -> StreamingResponse:
    """Server-sent events: the job each time its state, progress or message changes; the
    stream ends when the job has finished."""
    first = await run_in_threadpool(_snapshot, job_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[str]:
        data, last = first, None
        while True:
            seen = (data["state"], data["progress"], data["message"])
            if seen != last:
                last = seen
                yield f"event: job\ndata: {json.dumps(data, default=str)}\n\n"
            if data["state"] in JobState.FINISHED or await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)
            data = await run_in_threadpool(_snapshot, job_id)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@router.post("/{job_id}/cancel", dependencies=WRITE)
def jobs_cancel(job_id: Id) -> dict[str, Any]:
    """Cancel a queued or running job and the jobs chained after it."""
    return {"cancelled": cancel(job_id)}


@router.post("/crawl", dependencies=WRITE, status_code=202)
def jobs_crawl(body: CrawlIn, key: str | None = KEY) -> list[dict[str, Any]]:
    """The crawl chain: crawl -> dedupe [-> review push]."""
    from crawler.sources import UnknownSource, spider_for

    try:
        spider_for(body.source)
    except UnknownSource as exc:
        raise UsageError(str(exc)) from exc
    with session_scope() as session:
        get_species(session, body.species)
    return _submit(crawl_chain(body.species, body.source, body.limit, body.review), key)


@router.post("/train", dependencies=WRITE, status_code=202)
def jobs_train(body: TrainIn, key: str | None = KEY) -> list[dict[str, Any]]:
    """The training chain: [dataset create ->] export -> train."""
    get_arch(body.arch)
    if body.version is not None:
        from pipeline.datasets.versions import get_version

        with session_scope() as session:
            get_version(session, body.version)
    return _submit(train_chain(body.version, body.arch, body.mode, body.weights,
                               dict(body.hyper)), key)


@router.post("/dataset-create", dependencies=WRITE, status_code=202)
def jobs_dataset_create(body: DatasetCreateIn, key: str | None = KEY) -> list[dict[str, Any]]:
    """Freeze the approved images into a new dataset version, as a job."""
    return _submit([("dataset_create", body.model_dump())], key)


@router.post("/curate", dependencies=WRITE, status_code=202)
def jobs_curate(body: CurateIn, key: str | None = KEY) -> list[dict[str, Any]]:
    """The curate stage: the model's first pass over the pool (suspects, copies, gallery), on
    a train worker when a broker is set. A pass over an unchanged pool writes nothing."""
    from pipeline.curate.passes import CurateOptions, backbone

    args = body.model_dump(exclude_none=True)
    with session_scope() as session:
        backbone(session, CurateOptions(model_run_id=body.run))  # a frozen run, or refused
        if body.species:
            args["species"] = [get_species(session, s).slug for s in body.species]
    return _submit(curate_chain(args), key)

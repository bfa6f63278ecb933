"""`POST /v1/predict`: top-k species for one or several uploaded photos."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from catalog.limits import limits_from_settings
from catalog.settings import get_settings
from pipeline.serve.auth import require_read
from pipeline.serve.errors import ApiError
from pipeline.serve.models import ModelCache, ServedModel
from pipeline.serve.schemas import ERRORS, MAX_ID, PredictResponse
from pipeline.serve.uploads import decode, read_upload
from trainer.errors import TrainingError

router = APIRouter(prefix="/v1", tags=["predict"], dependencies=[Depends(require_read)])


def served_model(cache: ModelCache, run_id: int | None) -> ServedModel:
    try:
        return cache.get(run_id)
    except TrainingError as exc:
        message = str(exc)
        if run_id is None:
            raise ApiError(503, "no_model", message) from exc
        if message.startswith("no training run"):
            raise ApiError(404, "unknown_run", message) from exc
        raise ApiError(409, "run_not_servable", message) from exc


def _tensors(model: ServedModel, uploads: list[tuple[str, bytes]]) -> list[torch.Tensor]:
    limits = limits_from_settings()
    return [model.predictor.transform(decode(raw, limits, name)) for name, raw in uploads]


async def predict_uploads(request: Request, files: list[UploadFile], run: int | None,
                          top_k: int) -> dict[str, Any]:
    """What the API and the upload page answer: the checks, the batch, the names."""
    if not files:
        raise ApiError(422, "no_files", "send one or more images as multipart field 'files'")
    max_files = get_settings().serve.max_files
    if len(files) > max_files:
        raise ApiError(413, "too_many_files", f"{len(files)} images in one request; at most "
                       f"{max_files}")
    limits = limits_from_settings()
    uploads = [(f.filename or f"file {i + 1}", await read_upload(f, limits))
               for i, f in enumerate(files)]
    model = await run_in_threadpool(served_model, request.app.state.models, run)
    tensors = await run_in_threadpool(_tensors, model, uploads)
    rows = await model.batcher(tensors)
    return {
        "run": model.run,
        "results": [
            {"file": name, "sha256": hashlib.sha256(raw).hexdigest(),
             "predictions": model.top_k(probs, top_k)}
            for (name, raw), probs in zip(uploads, rows, strict=True)
        ],
    }


@router.post("/predict", response_model=PredictResponse, responses=ERRORS)
async def predict(
    request: Request,
    files: list[UploadFile] = File(..., description="One or more photos (JPEG, PNG, WebP...)."),
    run: int | None = Query(None, ge=1, le=MAX_ID,
                            description="Training run (default: the promoted or best run)."),
    top_k: int = Query(3, ge=1, le=100, description="Species per image."),
) -> dict[str, Any]:
    """Top-k species with probabilities and Latin, Chinese and English names, for each photo;
    with the run that predicted and its dataset version."""
    return await predict_uploads(request, files, run, top_k)

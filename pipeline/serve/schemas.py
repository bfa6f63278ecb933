"""Response shapes that appear in the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


MAX_ID = 2**31 - 1  # ids are 32-bit integers in the catalog
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int, Field(ge=1, le=MAX_ID)]

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {400: "bad request", 401: "token missing", 403: "token wrong or unset",
                         404: "not found", 409: "conflict", 413: "too large",
                         415: "not an image", 422: "invalid input",
                         503: "catalog, broker or model unavailable"}.items()
}


class SpeciesNames(BaseModel):
    species: str
    probability: float
    latin_name: str | None
    name_zh: str | None
    name_en: str | None


class DatasetRef(BaseModel):
    id: int
    name: str
    manifest_sha256: str | None


class RunRef(BaseModel):
    id: int
    arch: str
    state: str
    best_val_accuracy: float | None
    dataset_version: DatasetRef | None
    dataset_path: str | None


class ImagePrediction(BaseModel):
    file: str
    sha256: str
    predictions: list[SpeciesNames]


class PredictResponse(BaseModel):
    run: RunRef
    results: list[ImagePrediction]

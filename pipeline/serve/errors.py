"""Every error a client can cause, as a 4xx with one JSON shape:
``{"error": {"code": ..., "message": ...}}``; the CLI's user errors map onto HTTP statuses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from catalog.dataset_versions import VersionFrozen
from catalog.db import CatalogUnavailable
from catalog.species import SpeciesFileError, UnknownSpecies
from pipeline.errors import ServiceUnavailable, ShoalError
from trainer.errors import TrainingError


class ApiError(Exception):
    """An error with its HTTP status and a short machine-readable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _json(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status)


def _not_found(message: str) -> bool:
    return message.startswith("no ")


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_r: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status, exc.code, exc.message)

    @app.exception_handler(UnknownSpecies)
    async def _species(_r: Request, exc: UnknownSpecies) -> JSONResponse:
        return _json(404, "unknown_species", str(exc).strip("'\""))

    @app.exception_handler(SpeciesFileError)
    async def _species_file(_r: Request, exc: SpeciesFileError) -> JSONResponse:
        return _json(422, "invalid_species", str(exc))

    @app.exception_handler(TrainingError)
    async def _training(_r: Request, exc: TrainingError) -> JSONResponse:
        message = str(exc)
        if _not_found(message):
            return _json(404, "not_found", message)
        return _json(409, "training", message)

    @app.exception_handler(ServiceUnavailable)
    async def _unavailable(_r: Request, exc: ServiceUnavailable) -> JSONResponse:
        return _json(503, "unavailable", str(exc))

    @app.exception_handler(CatalogUnavailable)
    async def _catalog(_r: Request, exc: CatalogUnavailable) -> JSONResponse:
        return _json(503, "catalog_unavailable", str(exc))

    @app.exception_handler(VersionFrozen)
    async def _frozen(_r: Request, exc: VersionFrozen) -> JSONResponse:
        return _json(409, "immutable", str(exc))

    @app.exception_handler(ShoalError)
    async def _shoal(_r: Request, exc: ShoalError) -> JSONResponse:
        message = str(exc)
        return _json(404 if _not_found(message) else 400, "not_found" if _not_found(message)
                     else "bad_request", message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e["msg"]}
                    for e in exc.errors()]
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:3])
        return _json(422, "invalid_request", summary or "invalid request", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

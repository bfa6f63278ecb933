"""Every error a client can cause, as a 4xx with one JSON shape:
``{"error": {"code": ..., "message": ...}}``; the CLI's user errors map onto HTTP statuses."""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
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


def _for_a_page(request: Request) -> bool:
    return (not request.url.path.startswith(("/v1/", "/images/"))
            and "text/html" in request.headers.get("accept", ""))


def _page(status: int, message: str) -> HTMLResponse:
    return HTMLResponse(ERROR_PAGE.format(status=status, message=html.escape(message)),
                        status_code=status)


ERROR_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{status} · Shoal
</title><link rel="stylesheet" href="/static/style.css"></head><body><nav><a href="/"
class="brand">Shoal</a></nav><main><h1>{status}</h1><p class="warn">{message}</p></main></body>
</html>"""


def _not_found(message: str) -> bool:
    return message.startswith("no ")


def _answer(request: Request, status: int, code: str, message: str, **extra: Any) -> Response:
    if _for_a_page(request):
        return _page(status, message)
    return _json(status, code, message, **extra)


# user errors of the catalog and the pipeline whose status does not depend on the message
FIXED: dict[type[Exception], tuple[int, str]] = {
    UnknownSpecies: (404, "unknown_species"),
    SpeciesFileError: (422, "invalid_species"),
    ServiceUnavailable: (503, "unavailable"),
    CatalogUnavailable: (503, "catalog_unavailable"),
    VersionFrozen: (409, "immutable"),
}


def classify(exc: Exception) -> tuple[int, str]:
    """The HTTP status and code of a user error raised by the functions the CLI shares."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code
    for kind, answer in FIXED.items():
        if isinstance(exc, kind):
            return answer
    message = str(exc)
    if _not_found(message):
        return 404, "not_found"
    if isinstance(exc, TrainingError):
        if message.startswith(("unknown", "invalid")):
            return 422, "invalid_request"
        return 409, "training"
    return 400, "bad_request"


def install(app: FastAPI) -> None:
    async def _known(request: Request, exc: Exception) -> Response:
        status, code = classify(exc)
        return _answer(request, status, code, str(exc))

    for kind in (ApiError, *FIXED, TrainingError, ShoalError):
        app.add_exception_handler(kind, _known)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [{"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e["msg"]}
                    for e in exc.errors()]
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:3])
        return _answer(request, 422, "invalid_request", summary or "invalid request",
                       problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        if _for_a_page(request):
            return _page(exc.status_code, str(exc.detail))
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

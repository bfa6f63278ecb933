"""The ASGI app: one FastAPI over the route modules, the pages and the static files.

Nothing here is state that replicas must share: models are per process and warm, everything
else is read from the catalog on each request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError

from catalog.limits import limits_from_settings
from catalog.settings import get_settings
from pipeline.serve import errors
from pipeline.serve.limits import BodyLimit
from pipeline.serve.models import ModelCache
from pipeline.serve.routes import (
    datasets,
    health,
    images,
    jobs,
    pages,
    predict,
    runs,
    schedules,
    species,
    suspects,
)
from pipeline.serve.thumbnails import remove_partials

HERE = Path(__file__).parent
ROUTERS = [health.router, predict.router, species.router, schedules.router, jobs.router,
           datasets.router, runs.router, suspects.router, images.router, pages.router]
SMALL_BODY = 1 << 20  # everything but uploads: JSON and forms
UPLOAD_PATHS = ("/v1/predict", "/predict")


def _body_limit(path: str) -> int:
    if path in UPLOAD_PATHS:
        return get_settings().serve.max_files * limits_from_settings().max_bytes + SMALL_BODY
    return SMALL_BODY


def create_app() -> FastAPI:
    config = get_settings().serve

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        remove_partials()
        yield
        app.state.models.close()

    app = FastAPI(title="Shoal", version="0.1.0", lifespan=lifespan,
                  description="Fish-species prediction, and the Shoal platform over HTTP.")
    app.state.models = ModelCache(config.max_batch)
    errors.install(app)

    @app.exception_handler(OperationalError)
    async def _db_down(_r, exc: OperationalError) -> JSONResponse:  # type: ignore[no-untyped-def]
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unreachable"
        return JSONResponse(errors.error_body("catalog_unavailable", f"catalog: {reason}"),
                            status_code=503)

    app.add_middleware(BodyLimit, limit_for=_body_limit, timeout=config.timeout)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app

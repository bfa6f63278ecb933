"""Stored images and their thumbnails by sha256. A path is built only from a validated hex
digest (no traversal); content never changes under a hash, so answers are cached forever."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from catalog.imaging import ImageRejected
from catalog.settings import get_settings
from catalog.store import ImageStore
from pipeline.serve.deps import READ
from pipeline.serve.errors import ApiError
from pipeline.serve.schemas import ERRORS
from pipeline.serve.thumbnails import SIZES, make_thumbnail

router = APIRouter(prefix="/images", tags=["images"], dependencies=READ, responses=ERRORS)
Sha256 = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="sha256 of the stored file")]
FOREVER = "public, max-age=31536000, immutable"
JPEG = {200: {"content": {"image/jpeg": {}}}}


def _stored(sha256: str):  # type: ignore[no-untyped-def]
    store = ImageStore(get_settings().image_dir)
    path = store.path(store.relative_path(sha256))
    if not path.is_file():
        raise ApiError(404, "not_found", f"no stored image {sha256}")
    return path


def _cached(request: Request, etag: str) -> Response | None:
    if request.headers.get("if-none-match") in (etag, f"W/{etag}"):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": FOREVER})
    return None


@router.get("/{sha256}", response_class=FileResponse, responses=JPEG)
def image(sha256: Sha256, request: Request) -> Response:
    """The stored (normalised) JPEG."""
    etag = f'"{sha256}"'
    path = _stored(sha256)
    return _cached(request, etag) or FileResponse(
        path, media_type="image/jpeg", headers={"ETag": etag, "Cache-Control": FOREVER})


@router.get("/{sha256}/thumb", response_class=FileResponse, responses=JPEG)
async def thumbnail(sha256: Sha256, request: Request,
                    size: int = Query(128, description=f"One of {SIZES}.")) -> Response:
    """A thumbnail, made the first time and served from disk after."""
    if size not in SIZES:
        raise ApiError(422, "invalid_request", f"size must be one of {SIZES}")
    etag = f'"{sha256}-{size}"'
    cached = _cached(request, etag)
    if cached is not None:
        return cached
    try:
        path = await run_in_threadpool(make_thumbnail, _stored(sha256), sha256, size)
    except ImageRejected as exc:  # a stored file over today's pixel limit is not decoded
        raise ApiError(422, exc.reason, f"{sha256}: {exc}") from exc
    return FileResponse(path, media_type="image/jpeg",
                        headers={"ETag": etag, "Cache-Control": FOREVER})

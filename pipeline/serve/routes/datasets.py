"""Dataset versions: `shoal dataset list|show|diff` and the manifest."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from catalog.dataset_versions import ItemFilter, diff_versions, list_versions
from catalog.db import session_scope
from pipeline.datasets.versions import (
    ensure_manifest,
    get_version,
    version_detail,
    version_summary,
)
from pipeline.serve.deps import READ
from pipeline.serve.schemas import ERRORS

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], dependencies=READ,
                   responses=ERRORS)


def item_filter(species: list[str], split: str | None, site: str | None,
                license: str | None) -> ItemFilter:
    return ItemFilter(tuple(species), split, site, license)


@router.get("")
def datasets_list() -> list[dict[str, Any]]:
    """Every version, oldest first."""
    with session_scope() as session:
        return [version_summary(v) for v in list_versions(session)]


@router.get("/{ref}")
def datasets_show(
    ref: str,
    species: list[str] = Query([], description="Only these labels."),
    split: str | None = Query(None, description="train or val"),
    site: str | None = Query(None, description="Only images first found on this site."),
    license: str | None = Query(None, description="Only images under this license."),
    items: bool = Query(False, description="List a page of the matching images."),
    limit: int = Query(50, ge=0, le=10_000),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> dict[str, Any]:
    """A version with counts by species and split, site and license (of the matching
    images), and with ``items`` a page of them with their primary source."""
    with session_scope() as session:
        return version_detail(session, ref, item_filter(species, split, site, license),
                              items=items, limit=limit, offset=offset)


@router.get("/{old}/diff/{new}")
def datasets_diff(old: str, new: str, limit: int = Query(20, ge=0, le=100_000)
                  ) -> dict[str, Any]:
    """Images added, removed, relabelled and moved between splits (should be none)."""
    with session_scope() as session:
        diff = diff_versions(session, get_version(session, old), get_version(session, new))
    return diff.as_dict(limit or None)


@router.get("/{ref}/manifest", response_class=FileResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
def datasets_manifest(ref: str) -> FileResponse:
    """The version's manifest (JSON lines, verified against its sha256)."""
    with session_scope() as session:
        version = get_version(session, ref)
        path = ensure_manifest(session, version)
        digest = version.manifest_sha256
    return FileResponse(path, media_type="application/x-ndjson",
                        filename=f"{version.name}-manifest.jsonl",
                        headers={"ETag": f'"{digest}"'})

"""A crawl's Scrapy stats, summarised into what ``crawl_jobs.stats`` keeps."""

from __future__ import annotations

from typing import Any


def _prefixed(stats: dict[str, Any], prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: int(v) for k, v in sorted(stats.items()) if k.startswith(prefix)}


def summarise(stats: dict[str, Any]) -> dict[str, Any]:
    rejected = _prefixed(stats, "shoal/rejected/")
    return {
        "requests": int(stats.get("downloader/request_count", 0)),
        "responses": int(stats.get("downloader/response_count", 0)),
        "pages": int(stats.get("shoal/pages_ok", 0)),
        "page_errors": _prefixed(stats, "shoal/page_errors/"),
        "images_found": int(stats.get("shoal/images_found", 0)),
        "stored": int(stats.get("shoal/stored", 0)),  # new images in the catalog
        "duplicates": int(stats.get("shoal/duplicates", 0)),  # new URL, bytes already stored
        "existing": int(stats.get("shoal/existing", 0)),  # URL crawled before: not fetched
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "skipped": _prefixed(stats, "shoal/skipped/"),
        "bytes": int(stats.get("shoal/bytes", 0)),
        "ingest_batches": int(stats.get("shoal/ingest_batches", 0)),  # tasks sent to workers
        "elapsed_seconds": round(float(stats.get("elapsed_time_seconds", 0.0)), 3),
        "finish_reason": stats.get("finish_reason"),
    }


def failure_of(summary: dict[str, Any], first_error: str | None) -> str | None:
    """Why a crawl counts as failed, or None: it was stopped, or no page could be fetched."""
    if summary["finish_reason"] not in ("finished", None):
        return f"crawl stopped: {summary['finish_reason']}"
    if summary["pages"] == 0 and summary["page_errors"]:
        errors = ", ".join(f"{k}: {v}" for k, v in summary["page_errors"].items())
        return f"no page could be fetched ({errors}); first: {first_error}"
    return None

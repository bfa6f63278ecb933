"""A crawl's Scrapy stats, summarised into what ``crawl_jobs.stats`` keeps."""

from __future__ import annotations

from typing import Any


class Drop:
    """Why a spider left a result out before downloading it (``stats["skipped"]``)."""

    NOT_AN_IMAGE_TYPE = "not_an_image_type"  # video, PDF, SVG, DjVu, audio ...
    NO_URL = "no_url"  # the result names no image URL (or no image at all)
    BAD_URL = "bad_url"  # data:, javascript: or another non-web URL
    DUPLICATE_URL = "duplicate_url"  # found before in this crawl
    ALL_RIGHTS_RESERVED = "all_rights_reserved"  # no license given (iNaturalist, GBIF)
    WRONG_TAXON = "wrong_taxon"  # the result is of another taxon than the species
    NO_TAXON = "no_taxon"  # the source knows no taxon of this species' names
    NOT_FOUND = "not_found"  # the article asked for does not exist (404, missing page)


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
        "skipped": _prefixed(stats, "shoal/skipped/"),  # dropped by the spider (Drop)
        "refused": _prefixed(stats, "shoal/refused/"),  # requests never sent, by reason
        "articles_without_picture": int(stats.get("shoal/articles_without_picture", 0)),
        "warnings": [str(v) for _k, v in sorted(stats.items())
                     if _k.startswith("shoal/warnings/")],
        "bytes": int(stats.get("shoal/bytes", 0)),
        "ingest_batches": int(stats.get("shoal/ingest_batches", 0)),  # tasks sent to workers
        "elapsed_seconds": round(float(stats.get("elapsed_time_seconds", 0.0)), 3),
        "finish_reason": stats.get("finish_reason"),
    }


def drops(summary: dict[str, Any]) -> dict[str, int]:
    """Every result a crawl left out, by reason: the spider's drops and the fetch/content
    rejections (a reason named by both is summed)."""
    out: dict[str, int] = dict(summary.get("skipped") or {})
    for reason, n in (summary.get("rejected") or {}).items():
        out[reason] = out.get(reason, 0) + n
    return dict(sorted(out.items()))


def failure_of(summary: dict[str, Any], first_error: str | None) -> str | None:
    """Why a crawl counts as failed, or None: it was stopped, or no page could be fetched."""
    if summary["finish_reason"] not in ("finished", None):
        return f"crawl stopped: {summary['finish_reason']}"
    if summary["pages"] == 0 and summary["page_errors"]:
        errors = ", ".join(f"{k}: {v}" for k, v in summary["page_errors"].items())
        return f"no page could be fetched ({errors}); first: {first_error}"
    return None

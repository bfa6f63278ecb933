"""What a curation run found, read back: the suspects of a run (filtered, sorted by score,
paged), one image's suspicion, a run's counts by reason. ``shoal curate``, its gallery and
``shoal serve`` all list suspects through :func:`list_suspects`.

Light on purpose (no numpy, faiss or cleanlab): the API and the CLI's listing import it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from catalog.models import CurationRun, Image, ImageSuspicion
from pipeline.curate.quality import ISSUES, NOTED_ONLY
from pipeline.errors import UsageError

LABEL, NOT_A_FISH, COPY = "label", "not_a_fish", "copy"
# every reason a suspicion can carry: the label scores, the outlier score, the copies, and
# cleanvision's flags that make a suspect (odd_aspect is noted in details only)
REASONS: tuple[str, ...] = (LABEL, NOT_A_FISH, COPY,
                            *(flag for flag in ISSUES.values() if flag not in NOTED_ONLY))
Order = Literal["desc", "asc"]
ORDERS: tuple[str, ...] = ("desc", "asc")


@dataclass(frozen=True)
class SuspectQuery:
    """Which suspects to list. Empty tuples filter nothing; several values mean any of them."""

    run: int | None = None  # a curation run's id; None: the latest run
    reasons: tuple[str, ...] = ()
    species: tuple[str, ...] = ()  # the given species (the label the image is filed under)
    suggested: tuple[str, ...] = ()  # the species (or verdict) the run suggests
    order: Order = "desc"  # by score: "desc" most doubtful first
    limit: int = 50  # 0: every match
    offset: int = 0


def suspect_row(s: ImageSuspicion, sha256: str) -> dict[str, Any]:
    """One suspicion as every listing shows it (``shoal curate --json``, the API, the page)."""
    return {"image_id": s.image_id, "sha256": sha256, "score": s.score,
            "reasons": list(s.reasons), "given": s.given_label, "suggested": s.suggested_label,
            "suggested_probability": s.suggested_probability,
            "given_probability": s.given_probability, "details": dict(s.details or {})}


def get_run(session: Session, run_id: int | None) -> CurationRun | None:
    """The run asked for (a clear error when there is no such run), else the latest one, or
    None when curation has never run."""
    if run_id is None:
        return session.scalar(select(CurationRun).order_by(CurationRun.id.desc()).limit(1))
    run = session.get(CurationRun, run_id)
    if run is None:
        raise UsageError(f"no curation run {run_id}")
    return run


def reason_counts(session: Session, run_id: int) -> tuple[int, dict[str, int]]:
    """How many suspects the run found, and how many carry each reason (sorted by name)."""
    counts: Counter[str] = Counter()
    suspects = 0
    for (reasons,) in session.execute(select(ImageSuspicion.reasons).where(
            ImageSuspicion.run_id == run_id, ImageSuspicion.suspect.is_(True))):
        suspects += 1
        counts.update(reasons)
    return suspects, dict(sorted(counts.items()))


def run_summary(session: Session, run: CurationRun) -> dict[str, Any]:
    """A run as the listings head it: when, with what, over how many images, what it found."""
    stats = run.stats or {}
    suspects, reasons = reason_counts(session, run.id)
    params = run.params or {}
    return {"id": run.id, "created_at": run.created_at, "model_run_id": run.model_run_id,
            "job_id": run.job_id, "arch": params.get("arch"), "folds": params.get("folds"),
            "pool": stats.get("pool", 0), "judged": stats.get("judged", 0),
            "suspects": suspects, "reasons": reasons,
            "copies_linked": stats.get("copies_linked", 0)}


def list_runs(session: Session) -> list[dict[str, Any]]:
    """Every curation run, newest first (id, time, pool size)."""
    return [{"id": r.id, "created_at": r.created_at, "pool": (r.stats or {}).get("pool", 0)}
            for r in session.scalars(select(CurationRun).order_by(CurationRun.id.desc()))]


def _check(q: SuspectQuery) -> None:
    unknown = sorted(set(q.reasons) - set(REASONS))
    if unknown:
        raise UsageError(f"unknown reason {', '.join(unknown)}; one of {', '.join(REASONS)}")
    if q.order not in ORDERS:
        raise UsageError(f"order must be one of {', '.join(ORDERS)}, not {q.order!r}")
    if q.limit < 0 or q.offset < 0:
        raise UsageError("limit and offset must be 0 or more")


def _has_reason(reason: str) -> Any:
    # reasons is a JSON list of plain names: its text holds '"name"' exactly when the list
    # does, on SQLite and PostgreSQL alike (json, not jsonb: no containment operator)
    pattern = '%"' + reason.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + '"%'
    return cast(ImageSuspicion.reasons, String).like(pattern, escape="\\")


def _matching(session: Session, run_id: int, q: SuspectQuery
              ) -> tuple[int, list[dict[str, Any]]]:
    where = [ImageSuspicion.run_id == run_id, ImageSuspicion.suspect.is_(True)]
    if q.reasons:
        where.append(or_(*(_has_reason(r) for r in q.reasons)))
    if q.species:
        where.append(ImageSuspicion.given_label.in_(q.species))
    if q.suggested:
        where.append(ImageSuspicion.suggested_label.in_(q.suggested))
    total = session.scalar(select(func.count()).select_from(ImageSuspicion).where(*where))
    score = ImageSuspicion.score.desc() if q.order == "desc" else ImageSuspicion.score.asc()
    query = (select(ImageSuspicion, Image.sha256).join(Image, Image.id == ImageSuspicion.image_id)
             .where(*where).order_by(score, ImageSuspicion.image_id).offset(q.offset))
    if q.limit:
        query = query.limit(q.limit)
    return int(total or 0), [suspect_row(s, sha) for s, sha in session.execute(query)]


def list_suspects(session: Session, q: SuspectQuery) -> dict[str, Any]:
    """The run's suspects that match, most (or least) doubtful first, ties by image id: the
    run's summary, how many match in all, and the page asked for."""
    _check(q)
    run = get_run(session, q.run)
    if run is None:
        return {"run": None, "total": 0, "limit": q.limit, "offset": q.offset, "suspects": []}
    total, rows = _matching(session, run.id, q)
    return {"run": run_summary(session, run), "total": total, "limit": q.limit,
            "offset": q.offset, "suspects": rows}


def by_reason(session: Session, q: SuspectQuery) -> dict[str, Any]:
    """The suspects grouped by reason (one with two reasons is in both groups), each group a
    page of ``q``'s size: the groups of ``q.reasons``, else of every reason the run found,
    largest first."""
    _check(q)
    run = get_run(session, q.run)
    if run is None:
        return {"run": None, "groups": []}
    summary = run_summary(session, run)
    groups = []
    for reason in q.reasons or tuple(summary["reasons"]):
        total, rows = _matching(session, run.id, replace(q, reasons=(reason,)))
        if total or q.reasons:
            groups.append({"reason": reason, "total": total, "suspects": rows})
    groups.sort(key=lambda g: (-g["total"], g["reason"]))
    return {"run": summary, "groups": groups}


def image_suspicion(session: Session, sha256: str, run_id: int | None = None) -> dict[str, Any]:
    """One image's suspicion in a run (default: the latest run that scored it), suspect or
    not, with the runs that scored it."""
    image_id = session.scalar(select(Image.id).where(Image.sha256 == sha256))
    if image_id is None:
        raise UsageError(f"no image with sha256 {sha256}")
    rows = {s.run_id: s for s in session.scalars(
        select(ImageSuspicion).where(ImageSuspicion.image_id == image_id))}
    if run_id is None and not rows:
        raise UsageError(f"no suspicion for image {sha256}: no curation run has scored it")
    if run_id is not None:
        get_run(session, run_id)
        if run_id not in rows:
            raise UsageError(f"no suspicion for image {sha256} in curation run {run_id}")
    chosen = rows[run_id if run_id is not None else max(rows)]
    return {"run": chosen.run_id, "suspect": chosen.suspect, **suspect_row(chosen, sha256),
            "runs": sorted(rows)}

"""`shoal review push`: unique images go to Label Studio as tasks with a prediction.

A push never makes a second task for an image, even when it dies half-way. Each batch is
first journalled (review_tasks rows in state ``pushing``, committed), then imported in one
request, then recorded (Label Studio task ids, images ``in_review``). A journalled batch whose
outcome is unknown (timeout, crash) is reconciled before anything else is pushed: Label
Studio's tasks newer than the last recorded one are listed with their catalog image id, the
ones found are recorded and the rest of the journal is dropped so those images go again.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from sqlalchemy import Float, Select, case, cast, delete, exists, func, select, update
from sqlalchemy.orm import Session

from catalog import leases
from catalog.models import (
    Image,
    ImagePrediction,
    ImageSource,
    ImageStatus,
    ImageSuspicion,
    JobState,
    ReviewTask,
    Species,
    TrainingRun,
    utcnow,
)
from catalog.settings import get_settings
from catalog.species import UnknownSpecies
from labeling.autoaccept import AutoAcceptReport, auto_accept, latest_curation_run
from labeling.client import LabelStudioError, LabelStudioUnavailable, backoff, call
from labeling.config import VERDICTS, choice_result
from labeling.project import require_project

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

ORDERS = ("suspicion", "uncertainty", "oldest", "random")
PUSHING = "pushing"
OPEN = "pending"  # in Label Studio, not decided yet (the column's default)
KEYWORD = "keyword"
BATCH_SIZE = 500
ATTEMPTS = 3
LEASE = "review-push"
# renewed every 10 s while a push runs (catalog.leases.held): a killed push frees it in 30 s
LEASE_SECONDS = 30.0


@dataclass
class Candidate:
    image_id: int
    sha256: str
    path: str
    expected: str | None
    label: str | None
    score: float
    source: str


@dataclass
class PushReport:
    project_id: int
    order: str
    candidates: int = 0
    pushed: int = 0
    requests: int = 0
    reconciled: int = 0
    requeued: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    auto_accepted: AutoAcceptReport | None = None

    def as_dict(self) -> dict[str, object]:
        return {"project_id": self.project_id, "order": self.order,
                "auto_accepted": self.auto_accepted.as_dict() if self.auto_accepted else None,
                "candidates": self.candidates, "pushed": self.pushed,
                "requests": self.requests, "reconciled": self.reconciled,
                "requeued": self.requeued, "prediction_sources": dict(self.sources),
                "seconds": round(self.seconds, 3)}


def push_tasks(
    session: Session,
    client: LabelStudio,
    *,
    species: list[str] | str | None = None,
    limit: int | None = None,
    order: str | None = None,
    batch_size: int = BATCH_SIZE,
    project_id: int | None = None,
    auto_accept_at: float | None = None,
) -> PushReport:
    """Push unique, never-pushed images; commits after every step (see the module doc).
    ``order`` None: suspects first once a curation run exists, else the oldest first.
    ``auto_accept_at`` P: first let the model approve what it is sure of (labeling.autoaccept)."""
    order = order or default_order(session)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    started = time.perf_counter()
    project_id = project_id or require_project(client)
    report = PushReport(project_id, order)
    ttl = LEASE_SECONDS
    with leases.held(session, LEASE, ttl) as holder:
        report.reconciled, report.requeued = reconcile(session, client, project_id)
        if auto_accept_at is not None:
            report.auto_accepted = auto_accept(session, auto_accept_at)
            session.commit()
        candidates = select_candidates(session, species, limit, order)
        report.candidates = len(candidates)
        prefix = image_url_prefix()
        for start in range(0, len(candidates), batch_size):
            batch = candidates[start:start + batch_size]
            push_batch(session, client, project_id, batch, prefix, report)
            leases.require(session, LEASE, holder, ttl)
    report.seconds = time.perf_counter() - started
    return report


# --- what to push ---------------------------------------------------------------------------
def default_order(session: Session) -> str:
    return "suspicion" if latest_curation_run(session) is not None else "oldest"


def latest_model_run(session: Session) -> int | None:
    """The latest successful training run, when it has predictions to offer."""
    run_id = session.scalar(
        select(TrainingRun.id).where(TrainingRun.state == JobState.SUCCEEDED)
        .order_by(TrainingRun.finished_at.desc().nulls_last(), TrainingRun.id.desc()).limit(1))
    if run_id is None:
        return None
    has = session.scalar(select(ImagePrediction.id).where(ImagePrediction.run_id == run_id)
                         .limit(1))
    return run_id if has is not None else None


def keyword_scores() -> Any:
    """Per image: the share of its sources found under the keyword of its expected species."""
    agree = func.sum(case((ImageSource.species_id == Image.expected_species_id, 1), else_=0))
    counted = func.count(ImageSource.species_id)
    return (
        select(ImageSource.image_id.label("image_id"),
               (cast(agree, Float) /
                func.nullif(counted, 0)).label("score"))
        .join(Image, Image.id == ImageSource.image_id)
        .group_by(ImageSource.image_id)
        .subquery()
    )


def candidate_query(session: Session, species: list[str] | None, order: str) -> Select[Any]:
    run_id = latest_model_run(session)
    scores = keyword_scores()
    keyword_score = func.coalesce(scores.c.score, 1.0)
    pred = (select(ImagePrediction.image_id, ImagePrediction.label, ImagePrediction.confidence)
            .where(ImagePrediction.run_id == (run_id or -1)).subquery())
    sus = (select(ImageSuspicion.image_id, ImageSuspicion.suspect, ImageSuspicion.score,
                  ImageSuspicion.suggested_label, ImageSuspicion.suggested_probability)
           .where(ImageSuspicion.run_id == (latest_curation_run(session) or -1)).subquery())
    query = (
        select(Image.id, Image.sha256, Image.path, Species.slug, pred.c.label,
               pred.c.confidence, keyword_score, sus.c.suspect, sus.c.suggested_label,
               sus.c.suggested_probability)
        .outerjoin(Species, Species.id == Image.expected_species_id)
        .outerjoin(scores, scores.c.image_id == Image.id)
        .outerjoin(pred, pred.c.image_id == Image.id)
        .outerjoin(sus, sus.c.image_id == Image.id)
        .where(Image.status == ImageStatus.UNIQUE, Image.path.is_not(None),
               ~exists().where(ReviewTask.image_id == Image.id))
    )
    if species:
        query = query.where(Species.slug.in_(species))
    if order == "random":
        return query.order_by(func.random())
    if order == "suspicion":  # suspects first, most doubtful first; then by doubt
        return query.order_by(func.coalesce(sus.c.suspect, False).desc(),
                              func.coalesce(sus.c.score, 0.0).desc(), Image.id)
    if order == "uncertainty":
        return query.order_by(pred.c.confidence.is_(None), pred.c.confidence, keyword_score,
                              Image.id)
    return query.order_by(Image.created_at, Image.id)


def select_candidates(session: Session, species: list[str] | str | None, limit: int | None,
                      order: str) -> list[Candidate]:
    if isinstance(species, str):
        species = [species]
    known = set(session.scalars(select(Species.slug)))
    unknown = sorted(set(species or ()) - known)
    if unknown:
        raise UnknownSpecies(f"unknown species: {', '.join(unknown)}")
    query = candidate_query(session, species, order)
    if limit is not None:
        query = query.limit(limit)
    run_id = latest_model_run(session)
    curation = latest_curation_run(session)
    out = []
    for (image_id, sha, path, expected, label, confidence, kw_score, suspect, suggested,
         suggested_p) in session.execute(query):
        if suspect and suggested is not None and (suggested in known or suggested in VERDICTS):
            # a suspect goes with what the first pass suggests (the species, or a verdict)
            out.append(Candidate(image_id, sha, path, expected, suggested,
                                 round(float(suggested_p or 0.0), 4), f"curate-{curation}"))
        elif label is not None and (label in known or label in VERDICTS):
            out.append(Candidate(image_id, sha, path, expected, label, float(confidence),
                                 f"run-{run_id}"))
        else:
            out.append(Candidate(image_id, sha, path, expected, expected,
                                 round(float(kw_score), 4), KEYWORD))
    return out


def image_url_prefix() -> str:
    settings = get_settings()
    return settings.image_dir.resolve().relative_to(settings.data_dir.resolve()).as_posix()


def ls_task(candidate: Candidate, prefix: str) -> dict[str, Any]:
    data = {"image": f"/data/local-files/?d={quote(f'{prefix}/{candidate.path}')}",
            "image_id": candidate.image_id, "sha256": candidate.sha256,
            "expected": candidate.expected}
    task: dict[str, Any] = {"data": data}
    if candidate.label:
        task["predictions"] = [{"model_version": candidate.source, "score": candidate.score,
                                "result": choice_result(candidate.label)}]
    return task


# --- journal, import, record ----------------------------------------------------------------
def push_batch(session: Session, client: LabelStudio, project_id: int,
               batch: list[Candidate], prefix: str, report: PushReport) -> None:
    todo = batch
    for attempt in range(ATTEMPTS):
        journal(session, project_id, todo)
        report.requests += 1
        try:
            result = call(client, f"import {len(todo)} tasks", client.projects.import_tasks,
                          project_id, request=[ls_task(c, prefix) for c in todo],
                          return_task_ids=True, idempotent=False)
        except LabelStudioUnavailable as exc:
            if isinstance(exc.__cause__, httpx.ConnectError):
                drop_journal(session, [c.image_id for c in todo])  # never reached the server
                raise
            # outcome unknown: the tasks may exist; find out, then retry what is missing
            found, _ = reconcile(session, client, project_id)
            report.pushed += found
            done = set(recorded_images(session, [c.image_id for c in todo]))
            todo = [c for c in todo if c.image_id not in done]
            if not todo:
                break
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(backoff(attempt))
            continue
        except LabelStudioError:
            drop_journal(session, [c.image_id for c in todo])
            raise
        task_ids = list(result.task_ids or [])
        if len(task_ids) != len(todo):  # pragma: no cover - Label Studio broke its promise
            reconcile(session, client, project_id)
            raise LabelStudioError(f"Label Studio created {len(task_ids)} tasks for {len(todo)}")
        record(session, dict(zip([c.image_id for c in todo], task_ids, strict=True)))
        report.pushed += len(todo)
        report.sources.update(c.source.split("-")[0] for c in todo)
        break


def journal(session: Session, project_id: int, batch: list[Candidate]) -> None:
    session.execute(ReviewTask.__table__.insert(), [
        {"image_id": c.image_id, "ls_project_id": project_id, "prediction_label": c.label,
         "prediction_score": c.score, "prediction_source": c.source, "state": PUSHING,
         "pushed_at": utcnow(), "updated_at": utcnow()} for c in batch])
    session.commit()


def drop_journal(session: Session, image_ids: list[int]) -> None:
    session.execute(delete(ReviewTask).where(ReviewTask.image_id.in_(image_ids),
                                             ReviewTask.state == PUSHING))
    session.commit()


def record(session: Session, task_of_image: dict[int, int]) -> None:
    """Label Studio has these tasks: note their ids and put the images in review."""
    if not task_of_image:
        return
    rows = session.execute(select(ReviewTask.id, ReviewTask.image_id).where(
        ReviewTask.image_id.in_(list(task_of_image)))).all()
    now = utcnow()
    session.execute(update(ReviewTask), [
        {"id": rid, "ls_task_id": task_of_image[image_id], "state": OPEN, "updated_at": now}
        for rid, image_id in rows])
    session.execute(update(Image).where(
        Image.id.in_(list(task_of_image)), Image.status == ImageStatus.UNIQUE
    ).values(status=ImageStatus.IN_REVIEW, updated_at=now))
    session.commit()


def recorded_images(session: Session, image_ids: list[int]) -> list[int]:
    return list(session.scalars(select(ReviewTask.image_id).where(
        ReviewTask.image_id.in_(image_ids), ReviewTask.ls_task_id.is_not(None))))


def reconcile(session: Session, client: LabelStudio, project_id: int) -> tuple[int, int]:
    """Settle journalled rows of an interrupted push. Returns (recorded, dropped)."""
    journalled = set(session.scalars(select(ReviewTask.image_id).where(
        ReviewTask.state == PUSHING)))
    if not journalled:
        return 0, 0
    floor = session.scalar(select(func.max(ReviewTask.ls_task_id)).where(
        ReviewTask.ls_project_id == project_id)) or 0
    found: dict[int, int] = {}
    extra: list[int] = []
    for task_id, image_id in tasks_after(client, project_id, floor):
        if image_id not in journalled:
            continue
        if image_id in found:
            extra.append(task_id)  # a second task for one image: never keep it
        else:
            found[image_id] = task_id
    for task_id in extra:
        call(client, "delete a duplicate task", client.tasks.delete, task_id)
    record(session, found)
    missing = sorted(journalled - set(found))
    if missing:
        drop_journal(session, missing)
    return len(found), len(missing)


def tasks_after(client: LabelStudio, project_id: int, floor: int) -> list[tuple[int, int]]:
    """(task id, catalog image id) of the project's tasks with an id above ``floor``."""
    query = json.dumps({"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": floor}]},
        "ordering": ["tasks:id"]})

    def listing() -> list[tuple[int, int]]:
        pager = client.tasks.list(project=project_id, query=query, fields="task_only",
                                  page_size=1000)
        return [(t.id, int(t.data["image_id"])) for t in pager
                if isinstance(t.data, dict) and t.data.get("image_id") is not None]

    return call(client, "list recent tasks", listing)




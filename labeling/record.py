"""Annotations as Label Studio reports them, written into the catalog (pull and webhooks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog.ingest import insert_ignore
from catalog.models import Annotation, ReviewTask, utcnow
from labeling.client import call
from labeling.config import choice_of

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio


@dataclass(frozen=True)
class SeenAnnotation:
    """One annotation in Label Studio; ``choice`` is None when it was skipped or is empty."""

    ls_annotation_id: int
    ls_task_id: int
    annotator: str
    choice: str | None


class Annotators:
    """Label Studio user ids to e-mails, fetched once and again when an unknown id turns up."""

    def __init__(self, client: LabelStudio | None) -> None:
        self.client = client
        self.emails: dict[int, str] = {}
        self.missing: set[int] = set()  # asked for once, not found

    def name(self, who: Any) -> str:
        if isinstance(who, dict):
            if who.get("email"):
                return str(who["email"])
            who = who.get("id")
        if who is None:
            return "unknown"
        user_id = int(who)
        if user_id not in self.emails and user_id not in self.missing and self.client:
            users = call(self.client, "list users", lambda: list(self.client.users.list()))
            self.emails.update({u.id: u.email or u.username or f"user-{u.id}" for u in users})
            if user_id not in self.emails:
                self.missing.add(user_id)
        return self.emails.get(user_id, f"user-{user_id}")


def seen_from_ls(raw: dict[str, Any], annotators: Annotators,
                 ls_task_id: int | None = None) -> SeenAnnotation:
    """An annotation dict from an export or a webhook payload."""
    task = raw.get("task") if ls_task_id is None else ls_task_id
    if isinstance(task, dict):
        task = task.get("id")
    choice = None if raw.get("was_cancelled") else choice_of(raw.get("result"))
    return SeenAnnotation(int(raw["id"]), int(task), annotators.name(raw.get("completed_by")),
                          choice)


def record_annotations(session: Session, seen: Sequence[SeenAnnotation], source: str) -> set[int]:
    """Insert new annotations and update changed ones; returns the review tasks affected.

    Annotations of tasks Shoal did not push are ignored.
    """
    task_ids = review_task_ids(session, {s.ls_task_id for s in seen})
    existing = {
        row.ls_annotation_id: row
        for row in session.execute(
            select(Annotation.id, Annotation.ls_annotation_id, Annotation.review_task_id,
                   Annotation.annotator, Annotation.choice, Annotation.deleted)
            .where(Annotation.ls_annotation_id.in_([s.ls_annotation_id for s in seen]))
        )
    } if len(seen) < 5000 else load_all_annotations(session)
    now = utcnow()
    new, changed, affected = [], [], set()
    for s in seen:
        task_id = task_ids.get(s.ls_task_id)
        if task_id is None:
            continue
        old = existing.get(s.ls_annotation_id)
        if old is None:
            new.append({"review_task_id": task_id, "ls_annotation_id": s.ls_annotation_id,
                        "annotator": s.annotator, "choice": s.choice, "deleted": False,
                        "source": source, "created_at": now, "updated_at": now})
        elif (old.annotator, old.choice, old.deleted) != (s.annotator, s.choice, False):
            changed.append({"id": old.id, "annotator": s.annotator, "choice": s.choice,
                            "deleted": False, "source": source, "updated_at": now})
        else:
            continue
        affected.add(task_id)
    if new:
        insert_new(session, new)
    if changed:
        session.execute(update(Annotation), changed)
    return affected


def insert_new(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk insert; when a concurrent writer (pull beside a webhook) won a row, keep theirs."""
    try:
        with session.begin_nested():
            session.execute(insert(Annotation), rows)
    except IntegrityError:
        for row in rows:
            insert_ignore(session, Annotation, row, ["ls_annotation_id"])


def mark_deleted(session: Session, ls_annotation_ids: Iterable[int], source: str) -> set[int]:
    """Mark these annotations deleted; returns the review tasks affected."""
    ids = list(ls_annotation_ids)
    rows = session.execute(
        select(Annotation.id, Annotation.review_task_id)
        .where(Annotation.ls_annotation_id.in_(ids), Annotation.deleted.is_(False))
    ).all() if ids else []
    if rows:
        now = utcnow()
        session.execute(update(Annotation), [
            {"id": row.id, "deleted": True, "source": source, "updated_at": now} for row in rows])
    return {row.review_task_id for row in rows}


def load_all_annotations(session: Session) -> dict[int, Any]:
    return {row.ls_annotation_id: row for row in session.execute(
        select(Annotation.id, Annotation.ls_annotation_id, Annotation.review_task_id,
               Annotation.annotator, Annotation.choice, Annotation.deleted))}


def review_task_ids(session: Session, ls_task_ids: set[int]) -> dict[int, int]:
    if not ls_task_ids:
        return {}
    query = select(ReviewTask.ls_task_id, ReviewTask.id).where(ReviewTask.ls_task_id.is_not(None))
    if len(ls_task_ids) < 5000:
        query = query.where(ReviewTask.ls_task_id.in_(ls_task_ids))
    return dict(session.execute(query).all())

"""`shoal review pull`: read every annotation of the project and resolve what changed.

One export request returns every annotated task with its annotations; an annotation the
catalog holds that is no longer there was deleted in Label Studio. Webhooks deliver the same
facts one at a time (labeling/webhooks.py); both go through labeling/record.py and
labeling/resolve.py, so a pull after webhooks changes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from label_studio_sdk import LabelStudio
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Annotation, ReviewTask
from labeling.client import LabelStudioError, call
from labeling.project import require_project
from labeling.record import Annotators, mark_deleted, record_annotations, seen_from_ls
from labeling.resolve import ResolveReport, resolve_tasks

SOURCE = "pull"


@dataclass
class PullReport:
    project_id: int
    tasks: int = 0
    annotations: int = 0
    changed_tasks: int = 0
    deleted: int = 0
    decisions: ResolveReport = field(default_factory=ResolveReport)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"project_id": self.project_id, "tasks": self.tasks,
                "annotations": self.annotations, "changed_tasks": self.changed_tasks,
                "deleted": self.deleted, "decisions": self.decisions.as_dict(),
                "seconds": round(self.seconds, 3)}


def pull_annotations(session: Session, client: LabelStudio, *,
                     project_id: int | None = None) -> PullReport:
    started = time.perf_counter()
    project_id = project_id or require_project(client)
    report = PullReport(project_id)
    exported = export_annotated(client, project_id)
    annotators = Annotators(client)
    seen = [seen_from_ls(ann, annotators, ls_task_id=task["id"])
            for task in exported for ann in task.get("annotations") or ()]
    report.tasks, report.annotations = len(exported), len(seen)
    affected = record_annotations(session, seen, SOURCE)
    live = set(session.scalars(
        select(Annotation.ls_annotation_id)
        .join(ReviewTask, ReviewTask.id == Annotation.review_task_id)
        .where(ReviewTask.ls_project_id == project_id, Annotation.deleted.is_(False))))
    gone = live - {s.ls_annotation_id for s in seen}
    report.deleted = len(gone)
    affected |= mark_deleted(session, gone, SOURCE)
    report.changed_tasks = len(affected)
    report.decisions = resolve_tasks(session, affected, SOURCE)
    report.seconds = time.perf_counter() - started
    return report


def export_annotated(client: LabelStudio, project_id: int) -> list[dict[str, Any]]:
    """Every task of the project that has at least one annotation, with its annotations."""

    def download() -> bytes:
        return b"".join(client.projects.exports.download_sync(
            project_id, export_type="JSON", download_all_tasks=False))

    body = call(client, "export the annotations", download)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise LabelStudioError(f"Label Studio sent an export that is not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise LabelStudioError("Label Studio sent an export that is not a list of tasks")
    return data

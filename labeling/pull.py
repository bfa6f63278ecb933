"""`shoal review pull`: read every annotation of the project and resolve what changed.

One export snapshot returns every annotated task with its annotations; an annotation the
catalog holds that is no longer there was deleted in Label Studio (skipped annotations are
not votes: a task whose annotations are all skipped is not exported, and its skipped
annotations are left as they are). Webhooks deliver the same
facts one at a time (labeling/webhooks.py); both go through labeling/record.py and
labeling/resolve.py, so a pull after webhooks changes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Annotation, ReviewTask
from labeling.client import LabelStudioError, LabelStudioUnavailable, call
from labeling.project import require_project
from labeling.record import Annotators, mark_deleted, record_annotations, seen_from_ls
from labeling.resolve import ResolveReport, resolve_tasks

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

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
        .where(ReviewTask.ls_project_id == project_id, Annotation.deleted.is_(False),
               Annotation.choice.is_not(None))))
    gone = live - {s.ls_annotation_id for s in seen}
    report.deleted = len(gone)
    affected |= mark_deleted(session, gone, SOURCE)
    report.changed_tasks = len(affected)
    report.decisions = resolve_tasks(session, affected, SOURCE)
    report.seconds = time.perf_counter() - started
    return report


SNAPSHOT_OPTIONS = {
    # ids only for what Shoal does not read: about a third less work for Label Studio
    "serialization_options": {"drafts": {"only_id": True}, "predictions": {"only_id": True},
                              "annotations__completed_by": {"only_id": True}},
    "task_filter_options": {"annotated": "only"},  # a task with a live, not skipped, annotation
    "annotation_filter_options": {"usual": True, "ground_truth": True, "skipped": True},
}


def export_annotated(client: LabelStudio, project_id: int) -> list[dict[str, Any]]:
    """Every task with an annotation that is not skipped, with all its annotations.

    An export snapshot (made synchronously by Label Studio Community, polled otherwise),
    downloaded and deleted.
    """
    snapshot = call(client, "export the annotations", client.projects.exports.create,
                    project_id, title="shoal review pull", idempotent=False, **SNAPSHOT_OPTIONS)
    try:
        wait_until_exported(client, project_id, snapshot)
        body = call(client, "download the annotations", lambda: b"".join(
            client.projects.exports.download(project_id, snapshot.id, export_type="JSON")))
    finally:
        call(client, "delete the export snapshot", client.projects.exports.delete,
             project_id, snapshot.id)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise LabelStudioError(f"Label Studio sent an export that is not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise LabelStudioError("Label Studio sent an export that is not a list of tasks")
    return data


def wait_until_exported(client: LabelStudio, project_id: int, snapshot: Any,
                        attempts: int = 60) -> None:
    for attempt in range(attempts):
        status = str(snapshot.status or "")
        if status == "completed":
            return
        if status == "failed":
            raise LabelStudioError(f"Label Studio failed to export project {project_id}")
        time.sleep(min(5.0, 0.2 * 2**attempt))
        snapshot = call(client, "check the export", client.projects.exports.get, project_id,
                        snapshot.id)
    raise LabelStudioUnavailable(f"Label Studio did not finish exporting project {project_id}")

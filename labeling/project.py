"""`shoal review setup`: the review project, its image storage and its webhook, idempotently."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Species
from labeling.client import LabelStudioError, call
from labeling.config import INSTRUCTIONS, label_config

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

PROJECT_TITLE = "Shoal species review"
SECRET_HEADER = "X-Shoal-Webhook-Secret"
WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED",
                   "ANNOTATIONS_DELETED"]
STORAGE_TITLE = "Shoal image store"


class ProjectMissing(LabelStudioError):
    """There is no review project yet: `shoal review setup` makes it."""


@dataclass
class SetupReport:
    project_id: int
    project_created: bool
    config_updated: bool
    species: int
    storage_id: int
    storage_created: bool
    webhook_id: int | None = None
    webhook_created: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def find_project(client: LabelStudio, title: str = PROJECT_TITLE) -> int | None:
    for project in call(client, "list projects", lambda: list(client.projects.list(title=title))):
        if project.title == title:
            return project.id
    return None


def require_project(client: LabelStudio, title: str = PROJECT_TITLE) -> int:
    project_id = find_project(client, title)
    if project_id is None:
        raise ProjectMissing(f"Label Studio has no project {title!r}: run `shoal review setup`")
    return project_id


def setup_project(
    session: Session,
    client: LabelStudio,
    *,
    files_root: Path,
    title: str = PROJECT_TITLE,
    overlap: int = 1,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> SetupReport:
    """Create or update the project so it matches the catalog; safe to run any number of times.

    ``files_root`` is the Shoal data dir as the Label Studio server sees it (its
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); the storage covers ``files_root/images``.
    """
    species = session.scalars(select(Species).order_by(Species.id)).all()
    config = label_config(species)
    settings = {"label_config": config, "expert_instruction": INSTRUCTIONS,
                "show_instruction": True, "maximum_annotations": overlap,
                "show_collab_predictions": True, "description": "Approve, relabel or reject "
                "crawled fish photos before they enter a Shoal dataset."}
    project_id = find_project(client, title)
    created = updated = False
    if project_id is None:
        project = call(client, "create the review project", client.projects.create,
                       title=title, idempotent=False, **settings)
        project_id, created = project.id, True
    else:
        current = call(client, "read the review project", client.projects.get, project_id)
        changed = {k: v for k, v in settings.items() if not same(getattr(current, k, None), v)}
        if changed:
            call(client, "update the review project", client.projects.update, project_id,
                 **changed)
            updated = "label_config" in changed
    storage_id, storage_created = ensure_storage(client, project_id, files_root)
    report = SetupReport(project_id, created, updated, len(species), storage_id, storage_created)
    if webhook_url:
        if not webhook_secret:
            raise LabelStudioError("a webhook needs a shared secret: set SHOAL_WEBHOOK_SECRET")
        report.webhook_id, report.webhook_created = ensure_webhook(
            client, project_id, webhook_url, webhook_secret)
    return report


def same(current: object, wanted: object) -> bool:
    """Label Studio trims the strings it stores."""
    if isinstance(current, str) and isinstance(wanted, str):
        return current.strip() == wanted.strip()
    return current == wanted


def ensure_storage(client: LabelStudio, project_id: int, files_root: Path) -> tuple[int, bool]:
    """A local-files storage over the image store, so Label Studio serves the images itself.

    It is never synced (Shoal pushes the tasks); it only grants access to the files under it.
    """
    path = str(Path(files_root) / "images")
    storages = call(client, "list storages", client.import_storage.local.list, project=project_id)
    for storage in storages:
        if storage.path and str(Path(storage.path)) == path:
            return storage.id, False
    storage = call(client, "create the image storage", client.import_storage.local.create,
                   project=project_id, path=path, title=STORAGE_TITLE, use_blob_urls=False,
                   synchronizable=False, idempotent=False)
    return storage.id, True


def ensure_webhook(client: LabelStudio, project_id: int, url: str, secret: str) -> tuple[int, bool]:
    settings = {"url": url, "headers": {SECRET_HEADER: secret}, "send_payload": True,
                "send_for_all_actions": False, "actions": WEBHOOK_ACTIONS, "is_active": True}
    hooks = call(client, "list webhooks", client.webhooks.list, project=str(project_id))
    for hook in hooks:
        if hook.url == url and hook.project == project_id:
            call(client, "update the webhook", client.webhooks.update, hook.id, **settings)
            return hook.id, False
    hook = call(client, "create the webhook", client.webhooks.create, project=project_id,
                idempotent=False, **settings)
    return hook.id, True

"""A real Label Studio on loopback for the whole session, annotators, and a catalog with photos.

The server starts once (scripts/labelstudio.sh start, from the migrated template, a few
seconds) with its local-files document root at a session data dir; every test's
SHOAL_DATA_DIR points there, so the image store is shared (it is content-addressed) while each
test has its own catalog database and a fresh review project.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from label_studio_sdk import LabelStudio
from sqlalchemy import select, update

from catalog.db import session_scope
from catalog.limits import limits_from_settings
from catalog.models import Image, ImageStatus, Species
from catalog.settings import Settings, get_settings
from catalog.store import ImageStore
from labeling.client import make_client
from labeling.config import choice_result
from labeling.project import find_project
from pipeline.importer import import_files, list_files

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "labelstudio.sh"
DEV_TOKEN = "5ba1f1e1d0c0ffee5ba1f1e1d0c0ffee5ba1f1e1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabelStudioServer:
    url: str
    token: str
    files_root: Path
    data_dir: Path
    annotator_tokens: dict[str, str] = field(default_factory=dict)

    def client(self, **kwargs: object) -> LabelStudio:
        return make_client(self.url, self.token, **kwargs)  # type: ignore[arg-type]

    def annotator(self, email: str) -> LabelStudio:
        """A client acting as this annotator (signed up through the invite link)."""
        if email not in self.annotator_tokens:
            self.annotator_tokens[email] = sign_up(self.url, self.token, email)
        return make_client(self.url, self.annotator_tokens[email])


def sign_up(url: str, admin_token: str, email: str) -> str:
    """Sign up like a person invited to the organization would; returns their API token."""
    invite = httpx.get(f"{url}/api/invite", headers={"Authorization": f"Token {admin_token}"})
    invite.raise_for_status()
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as web:
        web.get("/user/signup/")
        form = {"email": email, "password": f"{email}-Pass-123",
                "csrfmiddlewaretoken": web.cookies.get("csrftoken")}
        answer = web.post(f"/user/signup/?token={invite.json()['token']}", data=form,
                          headers={"Referer": f"{url}/user/signup/"})
        assert answer.status_code == 302, answer.text[:500]
        token = web.get("/api/current-user/token")
        token.raise_for_status()
        return token.json()["token"]


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    root = tmp_path_factory.mktemp("labelstudio")
    files_root, data_dir = root / "data", root / "ls"
    (files_root / "images").mkdir(parents=True)
    port = free_port()
    env = {**os.environ, "SHOAL_LS_ALLOW_LOOPBACK_WEBHOOKS": "1",
           "SHOAL_LABEL_STUDIO_TOKEN": DEV_TOKEN}
    args = ["--data-dir", str(data_dir)]
    started = subprocess.run(
        [str(SCRIPT), "start", "--port", str(port), "--files-root", str(files_root), *args],
        env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield LabelStudioServer(f"http://127.0.0.1:{port}", DEV_TOKEN, files_root, data_dir)
    finally:
        subprocess.run([str(SCRIPT), "stop", *args], env=env, capture_output=True, timeout=120)


@pytest.fixture
def review_env(sqlite_env: Settings, label_studio: LabelStudioServer,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A fresh catalog whose data dir is the server's document root; no review project yet."""
    monkeypatch.setenv("SHOAL_DATA_DIR", str(label_studio.files_root))
    monkeypatch.setenv("SHOAL_LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("SHOAL_LABEL_STUDIO_TOKEN", label_studio.token)
    monkeypatch.setenv("SHOAL_WEBHOOK_SECRET", "test-secret")
    get_settings.cache_clear()
    client = label_studio.client()
    project_id = find_project(client)
    if project_id is not None:
        client.projects.delete(project_id)
    yield get_settings()
    get_settings.cache_clear()


def add_photos(fishdata: Path, per_species: dict[str, int]) -> list[int]:
    """Import real photos (f4k-23 crops) as ``unique`` images: {species slug: how many}."""
    settings = get_settings()
    store = ImageStore(settings.image_dir)
    folders = sorted((fishdata / "f4k-23").iterdir())
    ids: list[int] = []
    with session_scope() as session:
        for folder, (slug, n) in zip(folders, per_species.items(), strict=False):
            species_id = session.scalar(select(Species.id).where(Species.slug == slug))
            before = set(session.scalars(select(Image.id)))
            import_files(session, store, list_files(folder)[:n], species_id,
                         limits_from_settings(settings))
            session.flush()
            ids += sorted(set(session.scalars(select(Image.id))) - before)
        session.execute(update(Image).where(Image.id.in_(ids))
                        .values(status=ImageStatus.UNIQUE))
    return ids


def annotate(client: LabelStudio, task_id: int, choice: str) -> int:
    return client.annotations.create(id=task_id, result=choice_result(choice)).id

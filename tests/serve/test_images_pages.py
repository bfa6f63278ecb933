"""Images by sha256 (caching headers, no traversal, thumbnails made once) and the pages
rendered through the test client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import DatasetItem
from catalog.store import ImageStore
from pipeline.serve.process import REPO
from pipeline.serve.thumbnails import PARTIAL, STALE_AFTER, thumbnail_path
from tests.serve.conftest import photo


def some_sha(n: int = 0) -> str:
    with session_scope() as session:
        return session.scalars(select(DatasetItem.sha256).order_by(DatasetItem.id)
                               .offset(n)).first()


def test_images_are_served_by_hash_with_caching_headers(client: TestClient, served) -> None:
    sha = some_sha()
    r = client.get(f"/images/{sha}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.headers["etag"] == f'"{sha}"'
    assert "immutable" in r.headers["cache-control"]
    import hashlib

    assert hashlib.sha256(r.content).hexdigest() == sha
    again = client.get(f"/images/{sha}", headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304 and not again.content


def test_thumbnails_are_made_once_and_cached(client: TestClient) -> None:
    sha = some_sha()
    target = thumbnail_path(sha, 128)
    assert not target.exists()
    r = client.get(f"/images/{sha}/thumb?size=128")
    assert r.status_code == 200 and r.headers["etag"] == f'"{sha}-128"'
    assert max(Image.open(BytesIO(r.content)).size) == 128
    made = target.stat().st_mtime_ns
    assert client.get(f"/images/{sha}/thumb?size=128").content == target.read_bytes()
    assert target.stat().st_mtime_ns == made
    assert client.get(f"/images/{sha}/thumb?size=99").status_code == 422


# make_thumbnail in a child whose files may not grow past 512 bytes: past it the kernel kills the
# child with SIGXFSZ mid-write ("kill": the signal's default action restored, as Python ignores
# it) or the write fails with EFBIG ("fail")
WRITER = """
import resource, signal, sys
from pathlib import Path
from pipeline.serve.thumbnails import make_thumbnail
resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))
if sys.argv[3] == "kill":
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
make_thumbnail(Path(sys.argv[1]), sys.argv[2], 128)
"""


def _write_thumbnail(source: Path, sha: str, how: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", WRITER, str(source), sha, how], env=env,
                          capture_output=True, text=True, timeout=120)


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_a_killed_thumbnail_write_leaves_nothing_where_thumbnails_are_served(served) -> None:
    from pipeline.serve.app import create_app

    sha = some_sha(1)
    target = thumbnail_path(sha, 128)
    assert not target.exists()
    store = ImageStore(served.settings.image_dir)
    source = store.path(store.relative_path(sha))
    assert source.is_file()
    served_dir = served.settings.data_dir / "thumbs" / "128"
    partials = served.settings.data_dir / "thumbs" / PARTIAL
    before = _files(served_dir)  # other images' thumbnails, made by the tests above

    killed = _write_thumbnail(source, sha, "kill")
    assert _files(served_dir) == before  # no temporary file, no cut-off thumbnail
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr
    [left] = partials.iterdir()  # the killed writer's file, outside the served folders
    assert 0 < left.stat().st_size <= 512

    failed = _write_thumbnail(source, sha, "fail")
    assert failed.returncode == 1 and "File too large" in failed.stderr, failed.stderr
    assert _files(served_dir) == before
    assert list(partials.iterdir()) == [left]  # the failed writer removed its own

    fresh = partials / f"{sha[:12]}-128.other-replica.part"  # a write in progress elsewhere
    fresh.write_bytes(b"\xff\xd8")
    old = time.time() - STALE_AFTER - 60
    os.utime(left, (old, old))
    with TestClient(create_app(), client=("127.0.0.1", 50000)) as restarted:
        assert not left.exists() and fresh.exists()  # removed on start, once stale
        r = restarted.get(f"/images/{sha}/thumb?size=128")
    assert r.status_code == 200 and max(Image.open(BytesIO(r.content)).size) == 128
    assert target.read_bytes() == r.content
    fresh.unlink()


@pytest.mark.parametrize("path", [
    "/images/..%2F..%2Fcatalog.db", "/images/../catalog.db", "/images/%2e%2e/%2e%2e/etc/passwd",
    "/images/" + "0" * 64, "/images/" + "A" * 64, "/images/" + "0" * 64 + "/thumb",
    "/static/../catalog.db", "/static/%2e%2e/%2e%2e/catalog.db",
])
def test_no_path_traversal(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code in (404, 422), (path, r.status_code)
    assert b"SQLite" not in r.content


def test_pages_render(client: TestClient, served, fishdata: Path) -> None:
    rid = served.run_id
    html = {"Accept": "text/html"}
    for path, expected in [
        ("/", "Images by stage"), ("/species", "Crawl schedules"), ("/datasets", "small-v1"),
        ("/datasets/small-v1", "matching images"), ("/datasets/small-v1?species=koi&split=val",
                                                    "2 matching images"),
        ("/datasets/small-v1/diff/small-v1", "0 added"), ("/runs", f'href="/runs/{rid}"'),
        (f"/runs/{rid}", "Confusion matrix"), (f"/runs/compare?ids={rid}", "Runs compared"),
        ("/predict", 'enctype="multipart/form-data"'),
    ]:
        r = client.get(path, headers=html)
        assert r.status_code == 200, (path, r.text[:300])
        assert expected in r.text, path
    run = client.get(f"/runs/{rid}").text
    assert run.count("<svg") == 2 and "<polyline" in run
    missing = client.get("/datasets/nope", headers=html)
    assert missing.status_code == 404 and "no dataset version" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    koi = photo(fishdata, "Koi", 12)
    r = client.post("/predict", files={"files": (koi.name, koi.read_bytes(), "image/jpeg")},
                    data={"top_k": "3"})
    assert r.status_code == 200 and koi.name in r.text and "<meter" in r.text
    bad = client.post("/predict", files={"files": ("x.jpg", b"<html>", "image/jpeg")})
    assert bad.status_code == 415 and "not_an_image" in bad.text

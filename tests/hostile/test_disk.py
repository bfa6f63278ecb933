"""Unwritable paths and full disks: one line and an exit code (2: a path that cannot be
written, 1: a full disk), nothing half-written left behind, nothing committed lost.

Full and read-only disks are real: a tmpfs of a few KiB mounted for the test (the tests run as
root, as CI does).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.db import session_scope
from catalog.models import Image, ImageStatus
from catalog.store import ImageStore
from tests.hostile.shoal_proc import assert_one_line_error, child_env, shoal
from tests.trainer.catalog_data import create_version, import_species
from trainer.runs import create_run


@contextmanager
def tmpfs(where: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"these tests mount a tmpfs and need root (CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(folder: Path) -> None:
    """Write until the disk is full."""
    with suppress(OSError), (folder / "filler").open("wb") as fh:
        while True:
            fh.write(bytes(1 << 16))
            fh.flush()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_import_onto_a_full_disk_stops_in_one_line_and_keeps_what_it_stored(
        sqlite_env, fishdata: Path) -> None:
    folder = fishdata / "web-20" / "Mola"
    with tmpfs(sqlite_env.image_dir, "1m"):
        done = shoal("import", str(folder), "--species", "hairtail")
        line = assert_one_line_error(done, 1, "import stopped at", "No space left on device")
        assert str(folder) not in line.split(" after ")[0]  # the file named relative to it
        stored = _files(sqlite_env.image_dir)
        with session_scope() as s:
            rows = s.scalars(select(Image).where(Image.status != ImageStatus.INVALID)).all()
        assert rows, "the files before the disk filled are committed"
        assert {sqlite_env.image_dir / r.path for r in rows} <= set(stored)
        assert not any(p.suffix == ".part" for p in stored)


def test_import_with_the_catalog_on_the_full_disk_too(sqlite_env, fishdata: Path,
                                                      tmp_path: Path) -> None:
    """The embedded default: the SQLite catalog and the images share the disk that fills."""
    with tmpfs(tmp_path / "disk", "2m") as disk:
        with sqlite3.connect(tmp_path / "catalog.db") as src, \
                sqlite3.connect(disk / "catalog.db") as dst:
            src.backup(dst)  # the migrated catalog, its write-ahead log included
        env = child_env(SHOAL_DATA_DIR=str(disk / "data"),
                        SHOAL_DATABASE_URL=f"sqlite:///{disk / 'catalog.db'}")
        for name in ("Mola", "Shing"):
            done = shoal("import", str(fishdata / "web-20" / name), "--species", "hairtail",
                         env=env)
            if done.rc:
                break
        assert_one_line_error(done, 1)
        assert "No space left on device" in done.stderr or "disk is full" in done.stderr


@pytest.fixture
def version(sqlite_env, fishdata: Path) -> str:
    folders = {slug: sorted((fishdata / "web-20" / name).iterdir())[:4]
               for slug, name in (("koi", "Koi"), ("hilsa", "Hilsa"))}
    with session_scope() as session:
        images = import_species(session, ImageStore(sqlite_env.image_dir), folders)
        create_version(session, images, "disk-v1")
    return "disk-v1"


def test_dataset_export_to_an_unwritable_path(version: str, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        done = shoal("dataset", "export", version, "--out", str(ro / "export"))
        assert_one_line_error(done, 2, "Read-only file system", str(ro / "export"))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    done = shoal("dataset", "export", version, "--out", str(a_file / "export"))
    assert_one_line_error(done, 2, "Not a directory", str(a_file / "export"))


def test_dataset_export_to_a_full_disk_leaves_nothing_and_a_retry_succeeds(
        version: str, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "256k") as small:
        done = shoal("dataset", "export", version, "--out", str(small / "export"))
        assert_one_line_error(done, 1, "No space left on device", str(small / "export"))
        # the cut-off export was written beside the folder asked for and removed: no partial
        # folder, no hidden one either
        assert sorted(small.iterdir()) == []
        subprocess.run(["mount", "-o", "remount,size=4m", str(small)], check=True)
        again = shoal("dataset", "export", version, "--out", str(small / "export"))
        assert again.rc == 0, again.stdout + again.stderr
        assert [p.name for p in small.iterdir()] == ["export"]
        assert len(list((small / "export").rglob("*.jpg"))) == 8
        assert (small / "export" / "manifest.jsonl").is_file()


def test_an_export_clears_what_a_killed_export_left_but_not_a_running_one(
        version: str, tmp_path: Path) -> None:
    out = tmp_path / "export"
    killed = tmp_path / ".export.0123456789ab.partial"  # what a SIGKILL mid-export leaves
    (killed / "train").mkdir(parents=True)
    (killed / "train" / "cut.jpg").write_bytes(b"\xff\xd8 cut off")
    two_days_ago = time.time() - 2 * 86400
    os.utime(killed, (two_days_ago, two_days_ago))
    running = tmp_path / ".export.ba9876543210.partial"  # another export, still writing
    running.mkdir()
    other = tmp_path / ".other.0123456789ab.partial"  # another folder's: not ours to touch
    other.mkdir()
    os.utime(other, (two_days_ago, two_days_ago))
    done = shoal("dataset", "export", version, "--out", str(out))
    assert done.rc == 0, done.stdout + done.stderr
    assert not killed.exists() and running.is_dir() and other.is_dir()
    assert len(list(out.rglob("*.jpg"))) == 8


@pytest.fixture
def run_id(sqlite_env, tmp_path: Path) -> str:
    with session_scope() as session:
        return str(create_run(session, dataset=tmp_path, arch="resnet34", weights="none").id)


def test_report_to_an_unwritable_path(run_id: str, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        done = shoal("report", "--run", run_id, "--out", str(ro / "report.html"))
        assert_one_line_error(done, 2, "Read-only file system", str(ro))
    done = shoal("report", "--run", run_id, "--out", str(tmp_path / "ok.html"))
    assert done.rc == 0 and (tmp_path / "ok.html").stat().st_size > 1000, done.stderr


def test_report_to_a_full_disk_leaves_no_cut_off_file(run_id: str, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "64k") as full:
        fill(full)
        done = shoal("report", "--run", run_id, "--out", str(full / "report.html"))
        assert_one_line_error(done, 1, "No space left on device", str(full))
        assert [p.name for p in _files(full)] == ["filler"]

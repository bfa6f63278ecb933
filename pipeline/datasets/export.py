"""Export a dataset version: its manifest, and for ``imagefolder`` the images by split and class.

A new export is written into a hidden sibling of the folder asked for and renamed into place
at the end, so the folder appears whole or not at all: a full disk, a failing write or a
missing image removes what was written and names the folder asked for."""

from __future__ import annotations

import errno
import glob
import os
import secrets
import shutil
import time
from pathlib import Path

from sqlalchemy.orm import Session

from catalog.dataset_versions import item_image_paths
from catalog.models import DatasetVersion
from catalog.settings import get_settings
from catalog.splits import SPLITS
from catalog.store import file_sha256
from pipeline.datasets.versions import MANIFEST, ensure_manifest, get_version
from pipeline.errors import ShoalError, UsageError

FORMATS = ("imagefolder", "manifest")


def export_version(
    session: Session, version: str | int, fmt: str, out_dir: Path, *, copy: bool = False
) -> Path:
    """Write a version to ``out_dir``: its manifest, and for ``imagefolder`` the images as
    ``train|val/<species>/<sha256>.jpg`` hard-linked from the store (copied across
    filesystems, or always with ``copy``). Re-exporting into the same folder is a no-op."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    row = get_version(session, version)
    manifest = ensure_manifest(session, row)
    out_dir = Path(out_dir)
    if _check_out_dir(out_dir, row):  # an earlier export of it: fill in what is missing
        _write(session, row, manifest, fmt, out_dir, copy=copy)
        return out_dir
    work = _sibling(out_dir)
    try:
        _write(session, row, manifest, fmt, work, copy=copy)
        os.rename(work, os.path.abspath(out_dir))  # replaces an empty folder too
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _about(exc, out_dir) from exc
        raise
    return out_dir


def _write(session: Session, version: DatasetVersion, manifest: Path, fmt: str,
           out_dir: Path, *, copy: bool) -> None:
    if fmt == "imagefolder":
        _export_images(session, version, out_dir, copy=copy)
    shutil.copyfile(manifest, out_dir / MANIFEST)  # last: a folder with it is whole


STALE_PARTIAL_S = 24 * 3600  # a hidden folder this old is a killed export's, not a running one's


def _sibling(out_dir: Path) -> Path:
    """A new hidden folder beside ``out_dir`` (same filesystem, so the rename is atomic),
    made with the permissions ``out_dir`` itself would get. The hidden folders that killed
    exports of the same folder left behind are removed first."""
    target = Path(os.path.abspath(out_dir))  # "." and ".." spelled out: a name to hide beside
    remove_stale_partials(target)
    work = target.parent / f".{target.name}.{secrets.token_hex(6)}.partial"
    try:
        try:
            work.mkdir()
        except FileNotFoundError:
            work.mkdir(parents=True)
    except OSError as exc:
        raise _about(exc, out_dir) from exc
    return work


def remove_stale_partials(target: Path, older_than: float = STALE_PARTIAL_S) -> list[Path]:
    """Remove ``.<name>.<hex>.partial`` beside ``target`` not touched for ``older_than``
    seconds (a SIGKILL mid-export cannot clean up after itself)."""
    removed = []
    now = time.time()
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.partial"):
        try:
            if stale.is_dir() and now - stale.stat().st_mtime > older_than:
                shutil.rmtree(stale, ignore_errors=True)
                removed.append(stale)
        except OSError:
            continue
    return removed


def _about(exc: OSError, out_dir: Path) -> OSError:
    """The error of a write inside the hidden folder, told about the folder asked for."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror, str(out_dir))


def _check_out_dir(out_dir: Path, version: DatasetVersion) -> bool:
    """Whether ``out_dir`` holds an earlier export of this same version; False when it is
    missing or empty; any other folder is refused."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        return False
    previous = out_dir / MANIFEST
    if previous.is_file() and file_sha256(previous) == version.manifest_sha256:
        return True
    raise UsageError(f"--out {out_dir} is not empty and holds no export of {version.name!r}")


def _export_images(session: Session, version: DatasetVersion, out_dir: Path, *, copy: bool) -> None:
    image_root = get_settings().image_dir
    missing: list[str] = []
    made: set[Path] = set()
    for sha, label, split, rel in item_image_paths(session, version.id):
        src = image_root / rel if rel else None
        if src is None or not src.is_file():
            missing.append(sha)
            continue
        folder = out_dir / split / label
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        _place(src, folder / f"{sha}{src.suffix or '.jpg'}", copy=copy)
    for split in SPLITS:  # ImageFolder needs the folder even when a split is empty
        (out_dir / split).mkdir(exist_ok=True)
    if missing:
        raise ShoalError(
            f"{len(missing)} image file(s) of {version.name!r} are missing from the store "
            f"{image_root} (first: {missing[0]})"
        )


def _place(src: Path, dst: Path, *, copy: bool) -> None:
    if dst.exists():
        if dst.stat().st_size == src.stat().st_size:
            return
        dst.unlink()
    if not copy:
        try:
            os.link(src, dst)
            return
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    shutil.copyfile(src, dst)

"""`shoal import`: photos people took themselves, through the crawler's own ingest path.

A folder is walked without following links to folders; what is not a regular file (a FIFO, a
socket, a broken link) is skipped and counted by reason, never opened. A file is read only up
to the byte limit, after its size was checked. File names are reported relative to the folder
given, in a printable form (bytes that are not UTF-8 as ``\\xNN``); the source row's URL keeps
the name's original bytes, percent-encoded.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.orm import Session

from catalog.imaging import Limits, Reject
from catalog.ingest import IngestResult, SourceInfo, ingest_bytes, record_source
from catalog.store import ImageStore
from pipeline.errors import ShoalError, printable

SKIP_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
# a store that cannot take the next file: the import stops, and what it did is committed
STOP_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES,
               errno.EPERM}


class ImportStopped(ShoalError):
    """The store or catalog could not be written (a full disk): nothing after it was tried."""


@dataclass
class ImportReport:
    files: int = 0
    new: int = 0
    existing: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    rejected_files: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "new": self.new,
            "existing": self.existing,
            "rejected": self.rejected,
            "reasons": dict(self.reasons),
            "rejected_files": [
                {"file": f, "reason": r, "detail": d} for f, r, d in self.rejected_files
            ],
            "skipped": dict(self.skipped),
        }


@dataclass
class FolderScan:
    root: Path
    files: list[Path]
    skipped: Counter[str]


def display_name(path: Path, root: Path | None) -> str:
    """``path`` relative to the folder given (the file's own name when one file was given)."""
    if root is not None and root.is_dir():
        try:
            return printable(str(path.relative_to(root)))
        except ValueError:
            pass
    return printable(path.name if root is not None else str(path))


def file_url(path: Path) -> str:
    """A ``file://`` URL holding the path's original bytes, percent-encoded (``Path.as_uri``
    refuses names that are not UTF-8)."""
    return "file://" + quote(os.fsencode(path.resolve()), safe="/")


def _skip_reason(path: Path) -> str | None:
    """Why a walked entry is not imported, or None for a regular file (or a link to one)."""
    if path.name in SKIP_NAMES:
        return "system_file"
    if path.name.startswith("."):
        return "hidden"
    try:
        mode = path.stat().st_mode  # follows a link to its target
    except FileNotFoundError:
        return "broken_link" if path.is_symlink() else "vanished"
    except OSError:
        return "unreadable"
    if stat.S_ISDIR(mode):
        return "linked_folder"  # a link to a folder is not followed (no loops, no escapes)
    if not stat.S_ISREG(mode):
        return "not_a_regular_file"  # FIFO, socket, device: opening one could block
    return None


def scan(root: Path) -> FolderScan:
    """The regular files under ``root`` (or ``root`` itself), sorted, and what was skipped."""
    skipped: Counter[str] = Counter()
    if not root.is_dir():
        reason = _skip_reason(root)
        if reason in (None, "hidden", "system_file"):  # a file named explicitly is imported
            return FolderScan(root, [root], skipped)
        skipped[reason] += 1
        return FolderScan(root, [], skipped)
    files = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in [*names, *(d for d in dirs if os.path.islink(os.path.join(folder, d)))]:
            path = Path(folder) / name
            reason = _skip_reason(path)
            if reason is None:
                files.append(path)
            else:
                skipped[reason] += 1
    return FolderScan(root, sorted(files), skipped)


def list_files(root: Path) -> list[Path]:
    return scan(root).files


class FileTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes > {limit}")


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, never more than ``max_bytes`` read: the size is checked first (and a
    file that grows past the limit while read is refused too). Non-blocking open: a path
    swapped for a FIFO after the scan cannot hang the import."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > max_bytes:
            raise FileTooLarge(info.st_size, max_bytes)
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise FileTooLarge(len(raw), max_bytes)
    return raw


def import_one(session: Session, store: ImageStore, path: Path, species_id: int,
               limits: Limits) -> IngestResult:
    """One file into the catalog; an OSError that escapes is the store's or catalog's."""
    source = SourceInfo(url=file_url(path), site="local", title=printable(path.name))
    try:
        raw = read_bounded(path, limits.max_bytes)
    except FileTooLarge as exc:
        record_source(session, source, None, species_id, error=Reject.TOO_LARGE,
                      error_detail=str(exc))
        return IngestResult("rejected", None, Reject.TOO_LARGE, str(exc))
    except OSError as exc:
        return IngestResult("rejected", None, "unreadable", exc.strerror or str(exc))
    return ingest_bytes(session, store, raw, species_id=species_id, source=source, limits=limits)


def import_files(
    session: Session,
    store: ImageStore,
    files: Iterable[Path],
    species_id: int,
    limits: Limits,
    on_file: Callable[[Path], None] | None = None,
    commit_every: int = 50,
    root: Path | None = None,
) -> ImportReport:
    """Import ``files``; names in the report are relative to ``root`` when given. A store or
    catalog that cannot be written stops the import with :class:`ImportStopped`, after
    committing every file before it."""
    report = ImportReport()
    for i, path in enumerate(files, 1):
        report.files += 1
        try:
            result = import_one(session, store, path, species_id, limits)
        except OSError as exc:
            if exc.errno not in STOP_ERRNOS:
                raise
            session.commit()  # every file before this one is whole: keep it
            raise ImportStopped(
                f"import stopped at {display_name(path, root)}, the {i - 1} file(s) before it "
                f"recorded: {exc.strerror}: {printable(str(exc.filename2 or exc.filename))}"
            ) from exc
        if result.outcome == "rejected":
            report.rejected += 1
            report.reasons[result.reason or "unknown"] += 1
            report.rejected_files.append(
                (display_name(path, root), result.reason or "", result.detail or ""))
        elif result.outcome == "new":
            report.new += 1
        else:
            report.existing += 1
        if on_file:
            on_file(path)
        if i % commit_every == 0:
            session.commit()
    session.commit()
    return report


def import_scan(session: Session, store: ImageStore, found: FolderScan, species_id: int,
                limits: Limits, on_file: Callable[[Path], None] | None = None,
                commit_every: int = 50) -> ImportReport:
    """``import_files`` over a scanned folder, its skipped entries counted in the report."""
    report = import_files(session, store, found.files, species_id, limits, on_file=on_file,
                          commit_every=commit_every, root=found.root)
    report.skipped.update(found.skipped)
    return report

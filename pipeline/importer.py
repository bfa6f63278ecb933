"""`shoal import`: photos people took themselves, through the crawler's own ingest path."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from catalog.imaging import Limits
from catalog.ingest import SourceInfo, ingest_bytes
from catalog.store import ImageStore

SKIP_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass
class ImportReport:
    files: int = 0
    new: int = 0
    existing: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    rejected_files: list[tuple[str, str, str]] = field(default_factory=list)

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
        }


def list_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.name not in SKIP_NAMES and not p.name.startswith(".")
    )


def import_files(
    session: Session,
    store: ImageStore,
    files: Iterable[Path],
    species_id: int,
    limits: Limits,
    on_file: Callable[[Path], None] | None = None,
    commit_every: int = 50,
) -> ImportReport:
    report = ImportReport()
    for i, path in enumerate(files, 1):
        report.files += 1
        try:
            raw = path.read_bytes()
        except OSError as exc:
            report.rejected += 1
            report.reasons["unreadable"] += 1
            report.rejected_files.append((str(path), "unreadable", exc.strerror or str(exc)))
            continue
        source = SourceInfo(url=path.resolve().as_uri(), site="local", title=path.name)
        result = ingest_bytes(
            session, store, raw, species_id=species_id, source=source, limits=limits
        )
        if result.outcome == "rejected":
            report.rejected += 1
            report.reasons[result.reason or "unknown"] += 1
            report.rejected_files.append((str(path), result.reason or "", result.detail or ""))
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

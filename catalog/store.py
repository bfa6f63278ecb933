"""The content-addressed image store: ``images/ab/cd/<sha256>.jpg`` under the data dir."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from contextlib import suppress
from pathlib import Path

PARTIAL_DIR = ".partial"  # files being written; never under the content-addressed names
STALE_SECONDS = 600  # a put takes milliseconds: a partial file this old was left by a kill


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._swept = False

    def relative_path(self, sha256: str, ext: str = "jpg") -> str:
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"

    def path(self, relative: str) -> Path:
        return self.root / relative

    def exists(self, sha256: str, ext: str = "jpg") -> bool:
        return self.path(self.relative_path(sha256, ext)).is_file()

    def put(self, data: bytes, sha256: str | None = None, ext: str = "jpg") -> str:
        """Store ``data`` under its hash; returns the path relative to the store root.

        The file appears whole or not at all: it is written to a temporary file in the store's
        ``.partial/`` folder, its data flushed to disk (fdatasync: a third of fsync's cost) and
        renamed over the final name. Two writers of the same content both rename identical
        bytes, so concurrent puts are safe. A writer killed mid-write leaves its temporary file
        in ``.partial/`` only, outside the content names, and the store's first put in a later
        process removes it (``sweep_partial``).
        """
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and sha256 != digest:
            raise ValueError(f"content hash mismatch: expected {sha256}, got {digest}")
        relative = self.relative_path(digest, ext)
        final = self.path(relative)
        if final.is_file() and final.stat().st_size == len(data):
            return relative
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = self.root / PARTIAL_DIR
        if not self._swept:
            self.sweep_partial()
        partial.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{digest[:16]}.", suffix=".part", dir=partial)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fdatasync(fh.fileno())  # the bytes (and size) on disk before the catalog row
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return relative

    def sweep_partial(self, max_age: float = STALE_SECONDS) -> int:
        """Remove temporary files older than ``max_age`` seconds (left by killed writers);
        returns how many went."""
        self._swept = True
        removed = 0
        cutoff = time.time() - max_age
        with suppress(FileNotFoundError), os.scandir(self.root / PARTIAL_DIR) as entries:
            for entry in entries:
                with suppress(FileNotFoundError):
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def read(self, relative: str) -> bytes:
        return self.path(relative).read_bytes()

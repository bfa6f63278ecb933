"""The access rules as route dependencies (routes open their catalog session themselves, in
a ``with``, so a write is committed before its response is sent)."""

from __future__ import annotations

from fastapi import Depends

from pipeline.serve.auth import require_read, require_write

READ = [Depends(require_read)]
WRITE = [Depends(require_write)]

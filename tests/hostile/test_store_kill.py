"""A writer killed in the middle of a put leaves nothing under a content name, and what it left
in ``.partial/`` is swept by the next writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from catalog.store import PARTIAL_DIR, STALE_SECONDS, ImageStore
from tests.hostile.shoal_proc import child_env

WRITER = """
import os, sys, time
from catalog import store as store_mod
def stall(fd):  # the bytes are written; the process dies before they are flushed and renamed
    print("written", flush=True)
    time.sleep(60)
store_mod.os.fdatasync = stall
store_mod.ImageStore(sys.argv[1]).put(os.urandom(1 << 20))
"""


def _kill_mid_put(root: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE,
                            env=child_env(), text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def test_a_killed_put_leaves_no_content_file_and_is_swept(tmp_path: Path) -> None:
    _kill_mid_put(tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].parent == tmp_path / PARTIAL_DIR
    assert files[0].stat().st_size == 1 << 20  # what the kill left: never under a content name

    store = ImageStore(tmp_path)
    store.put(b"a fresh photo")  # too recent to be a dead writer's: kept
    assert files[0].exists()
    old = time.time() - STALE_SECONDS - 1
    os.utime(files[0], (old, old))
    ImageStore(tmp_path).put(b"another photo")  # a later process's first put sweeps it
    assert not files[0].exists()
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert len(left) == 2 and all(name.endswith(".jpg") for name in left)

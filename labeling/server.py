"""Start and stop a local Label Studio through scripts/labelstudio.sh (tests, benchmarks, demo)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from catalog.settings import child_env, get_settings

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "labelstudio.sh"
DEV_TOKEN = "5ba1f1e1d0c0ffee5ba1f1e1d0c0ffee5ba1f1e1"  # the script's public development token


@dataclass(frozen=True)
class LocalLabelStudio:
    url: str
    token: str
    files_root: Path  # its local-files document root: use it as SHOAL_DATA_DIR
    data_dir: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_label_studio(root: Path, *, loopback_webhooks: bool = False,
                       timeout: int = 300) -> Iterator[LocalLabelStudio]:
    """A server on a free loopback port with its data under ``root``; stopped on exit."""
    files_root, data_dir = root / "data", root / "labelstudio"
    (files_root / "images").mkdir(parents=True, exist_ok=True)
    configured = get_settings().review.label_studio_token
    token = (configured.get_secret_value() if configured else "") or DEV_TOKEN
    env = child_env({"SHOAL_LABEL_STUDIO_TOKEN": token,
                     "SHOAL_LS_ALLOW_LOOPBACK_WEBHOOKS": "1" if loopback_webhooks else "0"})
    port = free_port()
    where = ["--data-dir", str(data_dir)]
    started = subprocess.run(
        [str(SCRIPT), "start", "--port", str(port), "--files-root", str(files_root), *where],
        env=env, capture_output=True, text=True, timeout=timeout)
    if started.returncode != 0:
        raise RuntimeError(f"Label Studio did not start:\n{started.stderr[-3000:]}")
    try:
        yield LocalLabelStudio(f"http://127.0.0.1:{port}", token, files_root, data_dir)
    finally:
        subprocess.run([str(SCRIPT), "stop", *where], env=env, capture_output=True, timeout=120)

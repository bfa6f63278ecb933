"""`shoal serve` as a child process on a free loopback port, ready when its API answers: what
the tests and the benchmark start and stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from catalog.settings import child_env

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    def __init__(self, log: Path, env: dict[str, str] | None = None, port: int | None = None,
                 host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.log = log
        full_env = child_env({**(env or {}), "PYTHONUNBUFFERED": "1"})
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), full_env.get("PYTHONPATH")) if p)
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "serve", "--host", host, "--port",
                 str(self.port), "--log-level", "warning"],
                cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"shoal serve exited {self.popen.returncode}:\n"
                                   f"{self.text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"shoal serve not ready after {timeout} s:\n{self.text()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (uvicorn's graceful shutdown), then SIGKILL if it hangs; the exit code."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        return self.popen.returncode

    def __enter__(self) -> ServeProcess:
        return self.wait_ready()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

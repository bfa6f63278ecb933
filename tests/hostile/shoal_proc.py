"""The real `shoal` command in a subprocess, with its exit code, output and peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Done:
    rc: int
    stdout: str
    stderr: str
    peak_rss_mb: float  # the child's own peak resident memory (and its waited-for children)
    stdout_bytes: bytes = b""  # what it wrote, undecoded

    def json(self) -> Any:
        """The JSON document the command printed (after any progress output)."""
        start = min(i for i in (self.stdout.find("{"), self.stdout.find("[")) if i >= 0)
        return json.loads(self.stdout[start:])

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def child_env(**over: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80", "NO_COLOR": "1",
           "TERM": "dumb"}
    env.update(over)
    return env


# A fresh, small process that runs the command and reports its peak RSS. Not wait4 from the
# test itself: Linux carries the forking process's peak into the child across exec, so any
# child of a big pytest process would start with pytest's peak.
_LAUNCHER = """
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as fh:
    fh.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc if rc >= 0 else 128 - rc)
"""


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 300,
        cwd: Path | None = None) -> Done:
    """Run ``argv`` (killed after ``timeout`` seconds) and measure its own peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        try:
            proc = subprocess.run([sys.executable, "-c", _LAUNCHER, str(peak_file), *argv],
                                  capture_output=True, env=env or child_env(), cwd=cwd,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{argv} ran past {timeout} s: {exc.stderr!r}") from exc
        peak = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
        return Done(proc.returncode, proc.stdout.decode(errors="replace"),
                    proc.stderr.decode(errors="replace"), peak, proc.stdout)


def shoal(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Done:
    return run([sys.executable, "-m", "pipeline.cli", *args], env=env, timeout=timeout)


def python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> Done:
    return run([sys.executable, "-c", code], env=env, timeout=timeout)


def assert_one_line_error(done: Done, rc: int, *fragments: str) -> str:
    """The command failed with exit code ``rc`` and one ``error:`` line holding every fragment,
    and printed no traceback."""
    both = done.stdout + done.stderr
    assert "Traceback" not in both, both
    assert done.rc == rc, both
    lines = done.error_lines()
    assert len(lines) == 1, both
    for fragment in fragments:
        assert fragment in lines[0], both
    return lines[0]

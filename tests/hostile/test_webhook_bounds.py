"""The webhook receiver, attacked over raw sockets: bounded threads, time and bodies, a 4xx for
every malformed request, and no traceback in its log.

The receiver is the real command (``shoal review serve-webhooks``) in its own process on a free
loopback port, so its threads are counted from /proc and its log is what an operator sees."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labeling.project import SECRET_HEADER
from tests.rawsock import answer_to_an_oversized_header, dribble_until_closed, read_all

SECRET = "hostile-test-secret"
TIMEOUT = 2.0  # the receiver's --timeout: headers, and again the body
MAX_CONNECTIONS = 32
IDLE_CONNECTIONS = 1000
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Receiver:
    process: subprocess.Popen[str]
    port: int
    log: Path

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT * 4)
        return sock

    def threads(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^Threads:\s+(\d+)", status, re.M)
        assert match
        return int(match.group(1))


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    from catalog import db

    root = tmp_path_factory.mktemp("webhooks")
    url = f"sqlite:///{root / 'catalog.db'}"
    db.upgrade(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env.update(SHOAL_DATABASE_URL=url, SHOAL_DATA_DIR=str(root / "data"),
               SHOAL_WEBHOOK_SECRET=SECRET, PYTHONPATH=str(REPO), COLUMNS="200")
    log = root / "receiver.log"
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "review", "serve-webhooks", "--port", "0",
             "--timeout", str(TIMEOUT), "--max-connections", str(MAX_CONNECTIONS)],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=root)
    try:
        port = 0
        for _ in range(300):
            if found := re.search(r"listening on http://127\.0\.0\.1:(\d+)/", log.read_text()):
                port = int(found.group(1))
                break
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        assert port, log.read_text()
        yield Receiver(process, port, log)
    finally:
        process.terminate()
        process.wait(timeout=15)


def exchange(receiver: Receiver, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw`` on a fresh connection; the status and body of the answer."""
    with receiver.connect() as sock:
        sock.sendall(raw)
        data = read_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    assert match, data[:200]
    return int(match.group(1)), body


def post(body: bytes, *, length: str | None = None, ctype: str = "application/json",
         secret: str | None = SECRET) -> bytes:
    headers = [b"POST / HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
               f"Content-Type: {ctype}".encode(),
               f"Content-Length: {len(body) if length is None else length}".encode()]
    if secret is not None:
        headers.append(f"{SECRET_HEADER}: {secret}".encode())
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def no_traceback(receiver: Receiver) -> None:
    text = receiver.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize(("raw", "status"), [
    (post(b"{}", length="abc"), 400),
    (post(b"{}", length="-5"), 400),
    (post(b"{}", length="1e3"), 400),
    (post(b"", length="99999999999999999999"), 413),
    (post(b"", length=str(9 * 1024 * 1024)), 413),
    (post(b'{"a":' * 100_000 + b"1" + b"}" * 100_000), 400),
    (post(b"[" * 100_000 + b"]" * 100_000), 400),
    (post(b"{not json"), 400),
    (post(b"\xff\xfe{}"), 400),
    (post(b"[1, 2]"), 400),
    (post(b""), 400),
    (post(b'{"action": "ANNOTATION_CREATED"}', ctype="text/plain"), 415),
    (post(b'{"action": "ANNOTATION_CREATED"}', secret=None), 401),
    (post(b'{"action": "ANNOTATION_CREATED"}', secret="guess"), 401),
    (post(b'{"action": "ANNOTATION_CREATED", "annotation": {"id": "x", "task": 1}}'), 422),
    (post(b'{"action": "ANNOTATIONS_DELETED", "annotations": [{"id": null}]}'), 422),
    (b"PUT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 405),
    (b"NONSENSE\r\n\r\n", 400),
])
def test_malformed_requests_get_a_4xx_and_no_traceback(receiver: Receiver, raw: bytes,
                                                       status: int) -> None:
    got, body = exchange(receiver, raw)
    assert got == status, body[:300]
    if status not in (400, 405) or body.startswith(b"{"):
        assert "error" in json.loads(body)
    no_traceback(receiver)


def test_headers_over_the_limit_are_refused(receiver: Receiver) -> None:
    with receiver.connect() as sock:
        answer = answer_to_an_oversized_header(sock, b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    status, _ = exchange(receiver, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    no_traceback(receiver)


def test_a_slow_body_is_cut_off(receiver: Receiver) -> None:
    with receiver.connect() as sock:
        sock.sendall(post(b"", length="100") + b'{"action":')
        start = time.monotonic()
        data = read_all(sock)
        waited = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert TIMEOUT * 0.8 < waited < TIMEOUT * 3
    no_traceback(receiver)


def test_headers_dribbled_byte_by_byte_are_cut_off(receiver: Receiver) -> None:
    with receiver.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\n")
        closed, waited = dribble_until_closed(sock, TIMEOUT * 3)
    assert closed and waited < TIMEOUT * 2.5


def test_a_thousand_idle_connections_hold_no_threads_and_are_closed(receiver: Receiver) -> None:
    before = receiver.threads()
    idle = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            idle.append(receiver.connect())
        time.sleep(0.3)
        assert receiver.threads() <= max(before, 4)  # one event loop, whatever the clients do
        # while they are open, a new request is answered at once, with a 503
        status, _ = exchange(receiver, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 503
        # and the receiver hangs up on every one of them once the header time is up
        deadline = time.monotonic() + TIMEOUT * 4
        for sock in idle:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
    status, body = exchange(receiver, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200 and json.loads(body) == {"ok": True}
    assert receiver.process.poll() is None
    no_traceback(receiver)


def test_a_well_formed_call_is_served_and_keep_alive_still_works(receiver: Receiver) -> None:
    one = post(b'{"action": "PROJECT_UPDATED"}').replace(b"Connection: close", b"Connection: "
                                                          b"keep-alive")
    with receiver.connect() as sock:
        for _ in range(3):  # three requests on one connection, each well within the deadline
            sock.sendall(one)
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            body = head.partition(b"\r\n\r\n")[2]
            while len(body) < length:
                body += sock.recv(4096)
            assert json.loads(body) == {"action": "PROJECT_UPDATED", "ignored": True}
            time.sleep(TIMEOUT / 2)
        # then silent: the receiver hangs up once the next request's header time is up
        sock.settimeout(TIMEOUT * 3)
        assert sock.recv(1) == b""

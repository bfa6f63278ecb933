"""`shoal serve` attacked over raw sockets: connections, time and body sizes bounded, every
malformed request a 4xx, and no traceback in its log.

The server is the real command (``shoal serve``, uvicorn) in its own process over an empty
migrated catalog, with ``SHOAL_SERVE_TIMEOUT`` at 2 s; its threads are counted from /proc."""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.serve.limits import MAX_CONNECTIONS
from pipeline.serve.process import ServeProcess, free_port
from tests.rawsock import answer_to_an_oversized_header, dribble_until_closed, read_all
from tests.serve.conftest import TOKEN

TIMEOUT = 2.0
MAX_BYTES = 64 * 1024
MAX_FILES = 2
UPLOAD_LIMIT = MAX_FILES * MAX_BYTES + (1 << 20)  # pipeline.serve.app's rule for uploads
OFFERED = 64 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    from catalog import db

    root = tmp_path_factory.mktemp("bounds")
    url = f"sqlite:///{root / 'catalog.db'}"
    db.upgrade(url)
    db.get_engine(url).dispose()
    env = {"SHOAL_DATABASE_URL": url, "SHOAL_DATA_DIR": str(root / "data"),
           "SHOAL_API_TOKEN": TOKEN, "SHOAL_SERVE_TIMEOUT": str(TIMEOUT),
           "SHOAL_MAX_BYTES": str(MAX_BYTES), "SHOAL_SERVE_MAX_FILES": str(MAX_FILES),
           "SHOAL_CRAWL_SITE_GBIF_API": f"http://127.0.0.1:{free_port()}/v1"}
    with ServeProcess(root / "serve.log", env=env) as proc:
        yield proc


def connect(server: ServeProcess) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=TIMEOUT * 4)


def exchange(server: ServeProcess, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw`` on a fresh connection; the status and body of the answer."""
    with connect(server) as sock:
        sock.sendall(raw)
        data = read_all(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    assert match, data[:200]
    return int(match.group(1)), body


def request(method: str, path: str, body: bytes = b"", *, length: str | None = None,
            ctype: str = "application/json", keep_alive: bool = False) -> bytes:
    headers = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1",
               b"Connection: " + (b"keep-alive" if keep_alive else b"close"),
               f"Authorization: Bearer {TOKEN}".encode(), f"Content-Type: {ctype}".encode(),
               f"Content-Length: {len(body) if length is None else length}".encode()]
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def no_traceback(server: ServeProcess) -> None:
    text = server.text()
    assert "Traceback" not in text, text[-3000:]


def threads(server: ServeProcess) -> int:
    status = Path(f"/proc/{server.popen.pid}/status").read_text()
    match = re.search(r"^Threads:\s+(\d+)", status, re.M)
    assert match
    return int(match.group(1))


def closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server hangs up on ``sock`` (which sends nothing more)."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        assert sock.recv(1) == b""
    except TimeoutError:
        pytest.fail(f"connection still open after {limit} s")
    except ConnectionResetError:
        pass
    return time.monotonic() - start


@pytest.mark.parametrize(("raw", "status"), [
    (request("POST", "/v1/jobs/train", b"{}", length="abc"), 400),
    (request("POST", "/v1/jobs/train", b"{}", length="-5"), 400),
    (request("POST", "/v1/jobs/train", b"{}", length="1e3"), 400),
    (request("POST", "/v1/jobs/train", length="99999999999999999999"), 413),
    (request("PUT", "/v1/schedules", length=str(2 << 20)), 413),
    (request("POST", "/v1/predict", length=str(UPLOAD_LIMIT + 1),
             ctype="multipart/form-data; boundary=x"), 413),
    (request("POST", "/v1/jobs/train", b'{"a":' * 100_000 + b"1" + b"}" * 100_000), 400),
    (request("POST", "/v1/jobs/train", b"[" * 300_000 + b"]" * 300_000), 400),
    (request("POST", "/v1/jobs/train", b"{not json"), 422),
    (request("POST", "/v1/jobs/train", b"\xff\xfe{}"), 422),
    (request("POST", "/v1/predict", b"--x\r\ngarbage", ctype="multipart/form-data; boundary=x"),
     422),
    (b"NONSENSE\r\n\r\n", 400),
])
def test_malformed_requests_get_a_4xx_and_no_traceback(server: ServeProcess, raw: bytes,
                                                       status: int) -> None:
    got, body = exchange(server, raw)
    assert got == status, body[:300]
    if status == 413:
        assert json.loads(body)["error"]["code"] == "too_large"
    no_traceback(server)


def test_headers_over_the_limit_are_refused(server: ServeProcess) -> None:
    with connect(server) as sock:
        answer = answer_to_an_oversized_header(sock, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert exchange(server, HEALTH)[0] == 200
    no_traceback(server)


def test_an_idle_connection_is_closed_once_the_header_time_is_up(server: ServeProcess) -> None:
    with connect(server) as sock:
        waited = closed_after(sock, TIMEOUT * 4)
    assert TIMEOUT * 0.8 < waited < TIMEOUT * 2


def test_headers_dribbled_byte_by_byte_are_cut_off(server: ServeProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\n")
        closed, waited = dribble_until_closed(sock, TIMEOUT * 4)
    assert closed and waited < TIMEOUT * 2, waited
    no_traceback(server)


def test_keep_alive_is_bounded(server: ServeProcess) -> None:
    with connect(server) as sock:
        for _ in range(2):  # two requests on one connection, then silence
            sock.sendall(HEALTH.replace(b"Connection: close", b"Connection: keep-alive"))
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
            body = head.partition(b"\r\n\r\n")[2]
            while len(body) < length:
                body += sock.recv(4096)
        waited = closed_after(sock, TIMEOUT * 4)
    assert waited < TIMEOUT * 1.5  # uvicorn's own keep-alive would be 5 s


@pytest.mark.parametrize(("path", "head", "ctype"), [
    ("/v1/jobs/train", b'{"arch":', "application/json"),
    ("/v1/predict", b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"'
     b"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8", "multipart/form-data; boundary=x"),
])
def test_a_slow_body_is_answered_408(server: ServeProcess, path: str, head: bytes,
                                     ctype: str) -> None:
    with connect(server) as sock:
        sock.sendall(request("POST", path, head, length=str(len(head) + 5000), ctype=ctype))
        start = time.monotonic()
        answer = b""
        for _ in range(int(TIMEOUT * 4 / 0.2)):  # a byte every 0.2 s, until it answers
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                answer = read_all(sock)
                break
            sock.sendall(b"a")
        waited = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert TIMEOUT * 0.8 < waited < TIMEOUT * 2
    no_traceback(server)


def test_a_body_in_parts_within_the_time_is_served(server: ServeProcess) -> None:
    with connect(server) as sock:
        sock.sendall(request("POST", "/v1/jobs/train", b'{"arch":', length="11"))
        time.sleep(TIMEOUT * 0.6)
        sock.sendall(b" 5}")
        status = int(read_all(sock)[9:12])
    assert status == 422  # the arch must be a name: the body was read whole, then checked


def test_an_upload_over_the_limit_is_refused_while_it_streams(server: ServeProcess) -> None:
    """Chunked, so no Content-Length announces it: answered 413 once the limit is passed, long
    before the 64 MiB on offer are sent (what was sent past the limit sat in the kernel's
    socket buffers, a few MiB on loopback, and is dropped with the connection)."""
    part = (b'--x\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n\xff\xd8")
    head = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n\r\n")
    chunk = b"a" * 65536
    sent, answer = 0, b""
    with connect(server) as sock:
        sock.sendall(head + b"%x\r\n%s\r\n" % (len(part), part))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < OFFERED and not answer:
                if select.select([sock], [], [], 0)[0]:
                    answer = read_all(sock)
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        answer = answer or read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "too_large"
    assert sent < OFFERED // 4, sent
    no_traceback(server)


def test_connections_are_limited_hold_no_threads_and_are_closed(server: ServeProcess) -> None:
    assert exchange(server, HEALTH)[0] == 200
    before = threads(server)
    idle = []
    try:
        for _ in range(MAX_CONNECTIONS):
            idle.append(connect(server))
        time.sleep(0.3)
        assert threads(server) <= before  # one event loop, whatever the clients do
        # while they are open, a new request is answered at once, with a 503
        assert exchange(server, HEALTH)[0] == 503
        # and the server hangs up on every one of them once the header time is up
        deadline = time.monotonic() + TIMEOUT * 3
        for sock in idle:
            assert closed_after(sock, max(0.1, deadline - time.monotonic())) >= 0
    finally:
        for sock in idle:
            sock.close()
    status, body = exchange(server, HEALTH)
    assert status == 200 and json.loads(body)
    assert server.popen.poll() is None
    no_traceback(server)

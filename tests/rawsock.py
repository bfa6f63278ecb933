"""Raw-socket probes shared by the server-bounds tests (serve and the webhook receiver)."""

from __future__ import annotations

import contextlib
import socket
import time


def dribble_until_closed(sock: socket.socket, seconds: float,
                         step: float = 0.2) -> tuple[bool, float]:
    """Send one byte every ``step`` seconds for at most ``seconds``, as a slowloris client
    does: whether the server closed the connection, and after how long."""
    start = time.monotonic()
    for _ in range(int(seconds / step)):
        try:
            sock.sendall(b"X")
            sock.settimeout(step)
            if sock.recv(1024) == b"":
                return True, time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return True, time.monotonic() - start
    return False, time.monotonic() - start


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset ends it too)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def answer_to_an_oversized_header(sock: socket.socket, head: bytes) -> bytes:
    """Send ``head`` then one header line of up to 1 MiB: what the server answered (``b""``
    when it hung up while we still sent)."""
    sock.sendall(head + b"X-Big: ")
    with contextlib.suppress(OSError):  # the server may hang up while we still send
        for _ in range(64):  # bounded: up to 1 MiB of one header line
            sock.sendall(b"a" * 16384)
    with contextlib.suppress(OSError):
        return read_all(sock)
    return b""

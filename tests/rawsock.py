"""Raw-socket probes shared by the server-bounds tests (serve and the webhook receiver)."""

from __future__ import annotations

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

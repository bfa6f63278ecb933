"""What bounds a client of `shoal serve`: connections, time and body size.

- **Connections.** uvicorn runs one event loop: an open connection costs no thread. Past
  ``MAX_CONNECTIONS`` open connections (or requests in flight) a new request is answered 503.
- **Time.** A connection must deliver a request's headers within ``timeout`` seconds of opening
  or of its previous response, however slowly it dribbles them (uvicorn's own keep-alive timer
  starts only after a response and any byte cancels it), and they may take ``MAX_HEADERS``
  bytes. The body must then arrive within ``timeout`` seconds plus one second per
  ``MIN_BODY_RATE`` bytes received (Apache's mod_reqtimeout rule: a large upload on a slow
  link goes through, a byte now and then does not); past that the request is answered 408.
- **Size.** The body is capped while it streams in (a missing or lying Content-Length changes
  nothing): past its route's limit the request is answered 413 and the rest is not read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from pipeline.serve.errors import error_body

Scope = dict[str, Any]
MAX_CONNECTIONS = 256
MAX_HEADERS = 16 * 1024
MIN_BODY_RATE = 16 * 1024  # bytes a second, averaged over the body, past its first `timeout`
END = {"type": "http.request", "body": b"", "more_body": False}


def uvicorn_bounds(timeout: float) -> dict[str, Any]:
    """uvicorn's settings for the connection and header bounds above."""
    from labeling.webhooks import TimelyH11Protocol  # the webhook receiver's: the same rule

    return {"http": TimelyH11Protocol, "timeout_keep_alive": timeout,
            "limit_concurrency": MAX_CONNECTIONS, "h11_max_incomplete_event_size": MAX_HEADERS}


class BodyLimit:
    def __init__(self, app: Any, limit_for: Callable[[str], int], timeout: float) -> None:
        self.app = app
        self.limit_for = limit_for
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, 413, "too_large", f"request body over {limit} bytes")
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        seen = 0
        refused: tuple[int, str, str] | None = None
        finished = False

        async def counted() -> dict[str, Any]:
            nonlocal seen, refused, finished
            if refused:  # stop reading: the parser sees the end of the body
                return END
            if finished:  # the body is in: what follows is the disconnect, whenever it comes
                return await receive()
            left = start + self.timeout + seen / MIN_BODY_RATE - loop.time()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.0))
            except TimeoutError:
                refused = (408, "request_timeout", f"request body not received in time "
                           f"({seen} bytes after {loop.time() - start:.0f} s)")
                return END
            if message["type"] != "http.request":
                finished = True
                return message
            seen += len(message.get("body", b""))
            if seen > limit:
                refused = (413, "too_large", f"request body over {limit} bytes")
                return END
            finished = not message.get("more_body", False)
            return message

        started = False

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if refused:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _refuse(send, *refused)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, guarded_send)


async def _refuse(send: Any, status: int, code: str, message: str) -> None:
    """The error, and a hang-up: the rest of the body is never read."""
    body = json.dumps(error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

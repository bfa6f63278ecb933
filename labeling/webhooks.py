"""`shoal review serve-webhooks`: Label Studio tells Shoal about each annotation as it happens.

A small ASGI endpoint served by uvicorn that accepts a POST only with the shared secret in the
X-Shoal-Webhook-Secret header, and feeds the same recorder and resolver as `shoal review pull`.

It is reachable by whoever can reach its port, so everything it holds is bounded: connections
cost no thread (one event loop; the catalog work runs on one worker thread at a time), a
connection must deliver a request's headers within ``timeout`` seconds of opening or of the
previous response (uvicorn's keep-alive timer, armed here from the start too) and its body
within ``timeout`` more, more than ``max_connections`` open connections are answered 503, the
headers may take 16 KiB and the body ``MAX_BODY``. Malformed input gets a 4xx and one log line:
a bad ``Content-Length`` (uvicorn's parser, h11, answers 400), a body over the limit (413, not
read), a wrong content type (415), a slow body (408), invalid or too deeply nested JSON (400), a
payload of the wrong shape (422).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from typing import Any

import anyio
import h11
import uvicorn
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from labeling.project import SECRET_HEADER
from labeling.record import Annotators, mark_deleted, record_annotations, seen_from_ls
from labeling.resolve import resolve_tasks

SOURCE = "webhook"
MAX_BODY = 8 * 1024 * 1024  # Label Studio's payloads are a few KiB: an annotation and its task
MAX_HEADERS = 16 * 1024
log = logging.getLogger(__name__)


def handle_event(session: Session, payload: dict[str, Any],
                 annotators: Annotators) -> dict[str, Any]:
    """Apply one webhook payload; returns what it did."""
    action = payload.get("action")
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"):
        raw = payload.get("annotation")
        items = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else []
        affected = record_annotations(session, [seen_from_ls(a, annotators) for a in items],
                                      SOURCE)
    elif action == "ANNOTATIONS_DELETED":
        ids = [int(a["id"]) for a in payload.get("annotations") or () if "id" in a]
        affected = mark_deleted(session, ids, SOURCE)
    else:
        return {"action": action, "ignored": True}
    decisions = resolve_tasks(session, affected, SOURCE)
    return {"action": action, "tasks": len(affected), "decisions": decisions.as_dict()}


@dataclass(frozen=True)
class Bounds:
    timeout: float = 10.0  # seconds for a request's headers, and again for its body
    max_connections: int = 64  # open connections (and requests) before answering 503
    max_body: int = MAX_BODY


class Refused(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class TimelyH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers. uvicorn's keep-alive
    timer starts only after a response and any byte received cancels it, so a connection that
    never completes its headers (idle, or a byte now and then) was held for good; here such a
    connection is closed ``timeout_keep_alive`` seconds after it opened or after its last
    response. A request whose headers arrived is bounded by the app (body deadline)."""

    request_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_request_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_request_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.request_deadline is not None:
            self.request_deadline.cancel()
        super().connection_lost(exc)

    def _arm_request_deadline(self) -> None:
        if self.request_deadline is not None:
            self.request_deadline.cancel()
        if not self.transport.is_closing():
            self.request_deadline = self.loop.call_later(self.timeout_keep_alive,
                                                         self._request_overdue)

    def _request_overdue(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # no request got its headers
            with suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()


class WebhookApp:
    """The ASGI application: check, read, parse, then apply in a worker thread."""

    def __init__(self, secret: str, sessions: Callable[[], AbstractContextManager[Session]],
                 annotators: Annotators, bounds: Bounds) -> None:
        self.secret = secret.encode()
        self.sessions = sessions
        self.annotators = annotators
        self.bounds = bounds
        # one resolution at a time (SQLite has one writer anyway), on one worker thread: the
        # lock covers callers of apply() from elsewhere, the limiter keeps waiting requests
        # off threads
        self.lock = threading.Lock()
        self.limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            status, body = await self.respond(request)
        except Refused as exc:
            log.info("webhook refused (%d): %s", exc.status, exc.error)
            response = JSONResponse({"error": exc.error}, exc.status,
                                    headers={"Connection": "close"})  # unread body: hang up
        except ClientDisconnect:
            return
        else:
            response = JSONResponse(body, status)
        await response(scope, receive, send)

    async def respond(self, request: Request) -> tuple[int, dict[str, Any]]:
        if request.method in ("GET", "HEAD"):
            return 200, {"ok": True}
        if request.method != "POST":
            raise Refused(405, "POST a webhook payload")
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self.secret):
            raise Refused(401, f"missing or wrong {SECRET_HEADER} header")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refused(415, "expected Content-Type: application/json")
        payload = parse_payload(await self.read_body(request))
        try:
            if self.limiter is None:  # made inside the event loop that uses it
                self.limiter = anyio.CapacityLimiter(1)
            result = await anyio.to_thread.run_sync(self.apply, payload, limiter=self.limiter)
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused(422, f"payload not understood: {type(exc).__name__}: {exc}") from None
        except SQLAlchemyError as exc:  # Label Studio retries; a later pull repairs the catalog
            log.error("webhook %s: catalog error: %s", payload.get("action"), exc)
            return 503, {"error": f"catalog unavailable: {type(exc).__name__}"}
        except Exception as exc:  # not the caller's fault: the operator needs the traceback
            log.exception("webhook %s failed", payload.get("action"))
            return 500, {"error": f"{type(exc).__name__}: {exc}"}
        return 200, result

    async def read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        limit = self.bounds.max_body
        if declared is not None and int(declared) > limit:  # h11 checked it is a number
            raise Refused(413, f"body over {limit} bytes")
        chunks, size = [], 0
        with anyio.move_on_after(self.bounds.timeout) as deadline:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refused(413, f"body over {limit} bytes")
                chunks.append(chunk)
        if deadline.cancelled_caught:
            raise Refused(408, f"body not received within {self.bounds.timeout:g} s")
        if not size:
            raise Refused(400, "expected a JSON body")
        return b"".join(chunks)

    def apply(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock, self.sessions() as session:
            return handle_event(session, payload, self.annotators)


def parse_payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except RecursionError:
        raise Refused(400, "JSON nested too deeply") from None
    except ValueError:  # also bodies that are not UTF-8
        raise Refused(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise Refused(400, "body is not a JSON object")
    return payload


class WebhookServer:
    """The receiver on ``address`` (port 0: a free one), bound at once so ``url`` is known."""

    def __init__(self, address: tuple[str, int], secret: str,
                 sessions: Callable[[], AbstractContextManager[Session]],
                 annotators: Annotators, bounds: Bounds | None = None) -> None:
        self.bounds = bounds or Bounds()
        self.app = WebhookApp(secret, sessions, annotators, self.bounds)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(address)
        self.socket.listen(2048)  # connections wait in the backlog until the loop runs
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, http=TimelyH11Protocol, ws="none", lifespan="off", log_config=None,
            access_log=False, timeout_keep_alive=self.bounds.timeout,  # type: ignore[arg-type]
            limit_concurrency=self.bounds.max_connections,
            h11_max_incomplete_event_size=MAX_HEADERS, server_header=False))
        self.stopped = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}/" if ":" not in host else f"http://[{host}]:{port}/"

    def serve_forever(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.stopped.set()

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.stopped.wait(timeout=10)

    def server_close(self) -> None:
        self.socket.close()

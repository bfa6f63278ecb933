"""`shoal review serve-webhooks`: Label Studio tells Shoal about each annotation as it happens.

A small HTTP endpoint (standard library server, one thread per request) that accepts a POST
only with the shared secret in the X-Shoal-Webhook-Secret header, and feeds the same
recorder and resolver as `shoal review pull`.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy.orm import Session

from labeling.project import SECRET_HEADER
from labeling.record import Annotators, mark_deleted, record_annotations, seen_from_ls
from labeling.resolve import resolve_tasks

SOURCE = "webhook"
MAX_BODY = 32 * 1024 * 1024
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


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], secret: str,
                 sessions: Callable[[], AbstractContextManager[Session]],
                 annotators: Annotators) -> None:
        super().__init__(address, WebhookHandler)
        self.secret = secret
        self.sessions = sessions
        self.annotators = annotators
        self.lock = threading.Lock()  # one resolution at a time: SQLite has one writer anyway

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class WebhookHandler(BaseHTTPRequestHandler):
    server: WebhookServer

    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        given = self.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.server.secret.encode()):
            self.reply(401, {"error": f"missing or wrong {SECRET_HEADER} header"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self.reply(400, {"error": "expected a JSON body"})
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            self.reply(400, {"error": "body is not JSON"})
            return
        if not isinstance(payload, dict):
            self.reply(400, {"error": "body is not a JSON object"})
            return
        try:
            with self.server.lock, self.server.sessions() as session:
                result = handle_event(session, payload, self.server.annotators)
        except Exception as exc:  # reported to Label Studio; a later pull repairs the catalog
            log.exception("webhook %s failed", payload.get("action"))
            self.reply(500, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self.reply(200, result)

    def do_GET(self) -> None:  # noqa: N802
        self.reply(200, {"ok": True})

    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.info("%s " + format, self.address_string(), *args)

"""Real recorded responses (``../shared/recorded/``, read in place) and a loopback replay.

Cassettes come in two layouts: R ``vcr`` (``http_interactions``, ``response.status.status_code``)
and Python ``vcrpy`` (``interactions``, ``response.status.code``); both keep the body as text
under ``response.body.string``. ``replay(paths)`` serves the interactions of some cassettes on
loopback: a request is answered by the recorded interaction of the same path whose query
agrees on every key parameter (``name``, ``taxonKey``, ``offset``, ...) and shares the most
other parameters with it; anything else is a 404.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from catalog.settings import get_settings

KEY_PARAMS = ("name", "taxonKey", "offset", "q", "id", "geometry", "identifiedByID")


def recorded_dir() -> Path:
    """``SHOAL_RECORDED`` or ``../shared/recorded`` beside the checkout."""
    default = Path(__file__).resolve().parents[3].parent / "shared" / "recorded"
    return get_settings().demo.recorded or default


def recorded(relative: str) -> Path:
    path = recorded_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(f"recorded response {path} is missing (the shared recordings "
                                f"folder is expected at {recorded_dir()}; set SHOAL_RECORDED)")
    return path


@dataclass(frozen=True)
class Interaction:
    method: str
    url: str
    status: int
    content_type: str
    body: str

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))


def _header(headers: dict[str, Any], name: str) -> str:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) else str(value)
    return "application/octet-stream"


def load_cassette(path: Path) -> list[Interaction]:
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    out = []
    for item in doc.get("http_interactions") or doc.get("interactions") or []:
        req, resp = item["request"], item["response"]
        status = resp["status"]
        code = status.get("status_code", status.get("code"))
        out.append(Interaction(req["method"].upper(), req["uri"], int(code),
                               _header(resp.get("headers") or {}, "content-type"),
                               resp["body"].get("string") or ""))
    return out


def cassette_body(relative: str, path_contains: str, **params: str) -> str:
    """The body of the first interaction of a cassette whose URL path and params match."""
    for i in load_cassette(recorded(relative)):
        if path_contains in i.path and all(i.params.get(k) == v for k, v in params.items()):
            return i.body
    raise LookupError(f"{relative}: no interaction {path_contains} {params}")


def _score(recorded_params: dict[str, str], asked: dict[str, str]) -> int | None:
    for key in KEY_PARAMS:
        if (key in recorded_params or key in asked) and \
                recorded_params.get(key, "0" if key == "offset" else None) != \
                asked.get(key, "0" if key == "offset" else None):
            return None
    return sum(1 for k, v in asked.items() if recorded_params.get(k, "").lower() == v.lower())


class _Replay(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    interactions: list[Interaction]
    prefix: str


class _Handler(BaseHTTPRequestHandler):
    server: _Replay

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        asked = dict(parse_qsl(parts.query, keep_blank_values=True))
        path = parts.path[len(self.server.prefix):] if parts.path.startswith(
            self.server.prefix) else parts.path
        best: tuple[int, Interaction] | None = None
        for i in self.server.interactions:
            if not i.path.endswith(path):
                continue
            score = _score(i.params, asked)
            if score is not None and (best is None or score > best[0]):
                best = (score, i)
        if best is None:
            body, status, ctype = b"no recorded interaction", 404, "text/plain"
        else:
            body, status, ctype = best[1].body.encode(), best[1].status, best[1].content_type
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def replay(cassettes: list[str], prefix: str = "/v1") -> Iterator[str]:
    """Serve the cassettes (paths relative to the recordings) on loopback; yields the base URL
    that stands for ``https://api.gbif.org/v1``."""
    server = _Replay(("127.0.0.1", 0), _Handler)
    server.interactions = [i for c in cassettes for i in load_cassette(recorded(c))]
    server.prefix = prefix
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}{prefix}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

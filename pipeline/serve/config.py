"""What `shoal serve` reads of the ``serve`` section (:mod:`catalog.settings`):
``SHOAL_API_TOKEN``, ``SHOAL_SERVE_HOST``, ``SHOAL_SERVE_PORT``, the prediction limits and
the clients' time (``SHOAL_SERVE_TIMEOUT``)."""

from __future__ import annotations

from dataclasses import dataclass

from catalog.settings import get_settings


@dataclass(frozen=True)
class ServeConfig:
    api_token: str | None
    host: str
    port: int
    max_files: int
    max_batch: int
    timeout: float


def serve_config() -> ServeConfig:
    s = get_settings().serve
    return ServeConfig(s.token, s.host, s.port, s.max_files, s.max_batch, s.timeout)

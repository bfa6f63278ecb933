"""Who may do what: writes need ``Authorization: Bearer $SHOAL_API_TOKEN``; reads are open to
clients on loopback and need the token (header or ``shoal_token`` cookie) from elsewhere."""

from __future__ import annotations

import ipaddress
import secrets

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from catalog.settings import get_settings
from pipeline.serve.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="SHOAL_API_TOKEN")
TOKEN_COOKIE = "shoal_token"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _given(request: Request, creds: HTTPAuthorizationCredentials | None) -> str | None:
    if creds is not None:
        return creds.credentials
    return request.cookies.get(TOKEN_COOKIE)


def _check(given: str | None, what: str) -> None:
    token = get_settings().serve.token
    if not token:
        raise ApiError(403, "forbidden", f"{what} disabled: this server has no SHOAL_API_TOKEN")
    if not given:
        raise ApiError(401, "unauthorized",
                       f"{what} need a token: send Authorization: Bearer <SHOAL_API_TOKEN>")
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise ApiError(403, "forbidden", "wrong API token")


def require_write(request: Request,
                  creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    _check(_given(request, creds), "writes are")


def require_read(request: Request,
                 creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    if is_loopback(request.client.host if request.client else None):
        return
    _check(_given(request, creds), "reads from other hosts are")

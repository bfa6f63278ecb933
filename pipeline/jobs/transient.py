"""Database errors that pass: a dropped connection, a serialization failure, a deadlock.

A job that meets one is retried like one that met a network error; the runner's own
bookkeeping writes are retried in place a few times.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

T = TypeVar("T")

# 40001 serialization_failure, 40P01 deadlock_detected; class 08: connection exceptions;
# 57P01-57P03: the server shut down or terminated the session (pg_terminate_backend, restart)
RETRY_SQLSTATES = ("40001", "40P01")
RETRY_SQLSTATE_CLASSES = ("08", "57P")
SQLITE_BUSY = ("database is locked", "database table is locked")


def is_transient_db_error(exc: BaseException) -> bool:
    """This error (not its causes) says the database will likely answer a second try."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, sqlite3.OperationalError):
        return str(exc) in SQLITE_BUSY
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    if isinstance(exc, psycopg.InterfaceError):  # the connection was closed under us
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    if state is None:  # lost before the server could answer: "server closed the connection"
        return True
    return state in RETRY_SQLSTATES or state.startswith(RETRY_SQLSTATE_CLASSES)


def retrying(what: str, fn: Callable[[], T], *, attempts: int = 4, first: float = 0.5) -> T:
    """``fn()``, tried again after a transient database error (each try opens a new session,
    and the pool's pre-ping replaces a dead connection)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient_db_error(exc):
                raise
            log.warning("%s: %s; trying again", what, str(exc).splitlines()[0])
            time.sleep(first * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover

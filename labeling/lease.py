"""A named lease in the catalog, so only one push at a time journals and reconciles tasks."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from catalog.ingest import insert_ignore
from catalog.models import Lease, utcnow


class LeaseHeld(RuntimeError):
    """Another process holds the lease."""


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire(session: Session, name: str, holder: str, ttl: timedelta) -> None:
    """Take or renew the lease (committed), or raise LeaseHeld while someone else holds it."""
    now = utcnow()
    insert_ignore(session, Lease, {"name": name, "holder": holder, "expires_at": now + ttl},
                  ["name"])
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at < now))
        .values(holder=holder, expires_at=now + ttl)
    ).rowcount
    session.commit()
    if not taken:
        raise LeaseHeld(f"another process holds the {name!r} lease; try again when it is done")


def release(session: Session, name: str, holder: str) -> None:
    session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
    session.commit()


@contextmanager
def held(session: Session, name: str, ttl: timedelta) -> Iterator[str]:
    holder = holder_name()
    acquire(session, name, holder, ttl)
    try:
        yield holder
    finally:
        session.rollback()
        release(session, name, holder)

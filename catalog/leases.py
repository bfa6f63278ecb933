"""Named database leases with an expiry: one holder at a time, taken over once it lapses.

Both statements are single-row atomic writes (a conditional UPDATE, else an INSERT that the
primary key refuses to a second process), so they hold on SQLite and PostgreSQL alike. Expiry
is judged by the clocks of the machines involved: keep them NTP-synchronised.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog.models import Lease, utcnow


class LeaseHeld(RuntimeError):
    """Another process holds the lease."""


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire(session: Session, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``seconds``; False while another holder has it.

    Commits on its own: a lease is only worth something once other processes can see it.
    """
    now = utcnow()
    expires = now + timedelta(seconds=seconds)
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=expires)
    ).rowcount
    if taken:
        session.commit()
        return True
    if session.get(Lease, name) is not None:
        session.rollback()
        return False
    try:
        session.add(Lease(name=name, holder=holder, expires_at=expires))
        session.commit()
    except IntegrityError:  # another process inserted it first
        session.rollback()
        return False
    return True


def release(session: Session, name: str, holder: str) -> None:
    session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
    session.commit()


def require(session: Session, name: str, holder: str, seconds: float) -> None:
    """Take or renew the lease, or raise LeaseHeld while someone else holds it."""
    if not acquire(session, name, holder, seconds):
        raise LeaseHeld(f"another process holds the {name!r} lease; try again when it is done")


@contextmanager
def held(session: Session, name: str, seconds: float) -> Iterator[str]:
    """Hold the lease for the block (raising LeaseHeld when taken); released afterwards."""
    holder = holder_name()
    require(session, name, holder, seconds)
    try:
        yield holder
    finally:
        session.rollback()
        release(session, name, holder)


def holder_of(session: Session, name: str) -> tuple[str, datetime] | None:
    row = session.execute(
        select(Lease.holder, Lease.expires_at).where(Lease.name == name)
    ).first()
    return (row[0], as_utc(row[1])) if row else None


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; every one Shoal stores is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)

"""Named database leases with an expiry: one holder at a time, taken over once it lapses.

Both statements are single-row atomic writes (a conditional UPDATE, else an INSERT that the
primary key refuses to a second process), so they hold on SQLite and PostgreSQL alike. Expiry
is judged by the clocks of the machines involved: keep them NTP-synchronised.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from sqlalchemy import Connection, Engine, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalog.models import Lease, utcnow

log = logging.getLogger(__name__)


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


class Renewer(threading.Thread):
    """Renews a held lease every third of its term, from a session of its own, while its
    holder works: a short term then frees the lease soon after the holder is killed."""

    def __init__(self, bind: Engine | Connection, name: str, holder: str, seconds: float) -> None:
        super().__init__(name=f"lease-{name}", daemon=True)
        self.bind, self.lease, self.holder, self.seconds = bind, name, holder, seconds
        self.lost = threading.Event()
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.seconds / 3):
            try:
                with Session(self.bind) as session:
                    if not acquire(session, self.lease, self.holder, self.seconds):
                        self.lost.set()  # it lapsed and someone took it: the holder stops
                        return
            except Exception:  # the next renewal tries again: the term outlasts two misses
                log.warning("could not renew the %r lease", self.lease, exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=10)


@contextmanager
def held(session: Session, name: str, seconds: float) -> Iterator[str]:
    """Hold the lease for the block (raising LeaseHeld when taken), renewed in the background
    every ``seconds / 3``; released afterwards."""
    holder = f"{holder_name()}:{uuid4().hex[:6]}"
    require(session, name, holder, seconds)
    renewer = Renewer(session.get_bind(), name, holder, seconds)
    renewer.start()
    try:
        yield holder
    finally:
        renewer.stop()
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

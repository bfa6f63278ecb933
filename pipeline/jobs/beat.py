"""Celery beat's scheduler for Shoal: crawl schedules come from the catalog, not from config.

Every ``SHOAL_BEAT_INTERVAL`` seconds the scheduler renews (or tries to take) the ``beat``
lease; only its holder claims due schedules and queues their crawls, and sweeps for jobs the
broker lost (:mod:`pipeline.jobs.sweeper`). A standby beat takes over
once the leader's lease lapses (three intervals without renewal). Claims are atomic on their
own (see :mod:`pipeline.jobs.schedules`), so even two leaders could not double a run.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any
from uuid import uuid4

from celery.beat import Scheduler

from catalog import leases
from catalog.db import session_scope
from catalog.settings import get_settings
from pipeline.jobs.schedules import enqueue_due
from pipeline.jobs.sweeper import Sweeper

log = logging.getLogger(__name__)

LEASE = "beat"


class CatalogScheduler(Scheduler):
    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"
        # `shoal beat --interval` sets it on the app; else SHOAL_BEAT_INTERVAL
        self.every = float(app.conf.get("shoal_beat_interval")
                           or get_settings().jobs.beat_interval)
        self.lease_seconds = max(3 * self.every, 2.0)
        self.leader = False
        self._next_read = 0.0
        self.sweeper = Sweeper()
        super().__init__(app, *args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        wait = super().tick(*args, **kwargs)
        if time.monotonic() >= self._next_read:
            self._next_read = time.monotonic() + self.every
            self.read_catalog()
        return min(wait, max(0.05, self._next_read - time.monotonic()))

    def read_catalog(self) -> None:
        try:
            with session_scope() as session:
                leader = leases.acquire(session, LEASE, self.holder, self.lease_seconds)
                held_by = None if leader else leases.holder_of(session, LEASE)
            if leader != self.leader:
                log.warning("beat %s: %s", self.holder, "leading" if leader else "standing by")
            self.leader = leader
            if not leader:
                log.info("beat %s: standby tick, lease held by %s", self.holder,
                         held_by[0] if held_by else "nobody")
                return
            queued = enqueue_due()
            log.info("beat %s: leader tick, queued %d crawl(s)", self.holder, len(queued))
            self.sweeper.maybe_sweep()  # jobs the broker lost
        except Exception:  # the catalog or broker is down: try again next tick
            log.exception("beat %s: catalog tick failed", self.holder)

    def close(self) -> None:
        if self.leader:
            try:
                with session_scope() as session:
                    leases.release(session, LEASE, self.holder)
            except Exception:
                log.warning("beat %s: could not release the lease", self.holder, exc_info=True)
        super().close()

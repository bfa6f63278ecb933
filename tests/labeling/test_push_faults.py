"""A review push killed mid-way, and a frozen Label Studio, against the real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select

from catalog import leases
from catalog.db import session_scope
from catalog.leases import LeaseHeld
from catalog.models import Image, ImageStatus, ReviewTask
from labeling.client import LabelStudioUnavailable
from labeling.push import LEASE, LEASE_SECONDS, push_tasks
from tests.labeling.conftest import LabelStudioServer, add_photos
from tests.labeling.test_review_labelstudio import ls_tasks, setup
from tests.pipeline.conftest import REPO, wait_until

pytestmark = pytest.mark.labelstudio


def review_rows() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(ReviewTask))


def lease_expiry() -> float | None:
    """Seconds until the push lease lapses; None when nobody holds it."""
    with session_scope() as session:
        held = leases.holder_of(session, LEASE)
    if held is None:
        return None
    return (held[1] - leases.utcnow()).total_seconds()


def test_killed_push_frees_its_lease_within_its_term(review_env, label_studio, fishdata
                                                      ) -> None:
    project_id = setup(label_studio)
    ids = add_photos(fishdata, {"hairtail": 20, "silver-pomfret": 20})
    push = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "review", "push",
                             "--batch-size", "2"], cwd=REPO, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def mid_push() -> bool:
            assert push.poll() is None, f"the push ended before the kill: {push.stdout.read()}"
            return lease_expiry() is not None and review_rows() > 0

        wait_until(mid_push, timeout=120, what="the push to hold its lease and journal tasks")
        push.send_signal(signal.SIGKILL)
        push.wait(timeout=10)
    finally:
        if push.poll() is None:
            push.kill()
    killed = time.monotonic()
    left = lease_expiry()
    assert left is not None and left <= LEASE_SECONDS  # it was 600 s, not renewed
    assert review_rows() < len(ids)  # really killed half-way
    with session_scope() as session:
        recorded = session.scalar(select(func.count()).select_from(ReviewTask)
                                  .where(ReviewTask.ls_task_id.is_not(None)))

    def second_push() -> object:
        try:
            with session_scope() as session:
                return push_tasks(session, label_studio.client(), batch_size=10)
        except LeaseHeld:
            time.sleep(0.5)
            return None

    report = wait_until(second_push, timeout=LEASE_SECONDS + 30, what="the lease to lapse")
    freed_after = time.monotonic() - killed
    assert freed_after <= LEASE_SECONDS + 5, f"{freed_after:.1f}s"
    assert lease_expiry() is None  # released at the end of the second push
    # the killed push's batch in flight was reconciled: each image has exactly one task
    tasks = ls_tasks(label_studio, project_id)
    assert sorted(t.data["image_id"] for t in tasks) == sorted(ids)
    assert report.pushed + report.reconciled == len(ids) - recorded
    with session_scope() as session:
        assert set(session.scalars(select(Image.status))) == {ImageStatus.IN_REVIEW}
        assert set(session.scalars(select(ReviewTask.state))) == {"pending"}


@contextmanager
def frozen(ls: LabelStudioServer) -> Iterator[None]:
    """SIGSTOP the server's process group: it accepts connections (the kernel's backlog)
    and never answers; SIGCONT afterwards."""
    pid = int((ls.data_dir / "labelstudio.pid").read_text().strip())
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pid, signal.SIGCONT)


def test_frozen_label_studio_fails_a_push_within_a_minute(review_env, label_studio, fishdata
                                                          ) -> None:
    setup(label_studio)
    ids = add_photos(fishdata, {"hairtail": 3})
    client = label_studio.client()
    with frozen(label_studio):
        started = time.monotonic()
        with session_scope() as session, \
                pytest.raises(LabelStudioUnavailable, match="timed out") as caught:
            push_tasks(session, client)
        took = time.monotonic() - started
    assert 20 <= took <= 60, f"{took:.1f}s"  # one read timeout and one retry, not 6 minutes
    assert "no answer in" in str(caught.value)
    assert lease_expiry() is None  # the failed push let go of its lease
    with session_scope() as session:
        report = push_tasks(session, label_studio.client())
    assert report.pushed == len(ids)


def test_a_push_keeps_its_short_lease_through_a_stall(review_env, label_studio, fishdata,
                                                       monkeypatch) -> None:
    """With a 1.5 s term, Label Studio frozen for 4 s mid-push: the push waits on its import,
    and the renewal keeps the lease held throughout (without it, it would lapse)."""
    import threading

    from labeling import push as push_module

    monkeypatch.setattr(push_module, "LEASE_SECONDS", 1.5)
    setup(label_studio)
    ids = add_photos(fishdata, {"hairtail": 20, "silver-pomfret": 20})
    reports = []

    def push() -> None:
        with session_scope() as session:
            reports.append(push_tasks(session, label_studio.client(), batch_size=2))

    pushing = threading.Thread(target=push)
    pushing.start()
    wait_until(lambda: lease_expiry() is not None and review_rows() > 0, timeout=60,
               what="the push to be under way")
    left: list[float | None] = []
    with frozen(label_studio):
        stall_ends = time.monotonic() + 4
        while time.monotonic() < stall_ends:
            left.append(lease_expiry())
            time.sleep(0.1)
    pushing.join(timeout=60)
    assert all(s is not None and s > 0 for s in left), left
    [report] = reports
    assert report.pushed == len(ids), report.as_dict()

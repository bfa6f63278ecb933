"""Two beats (two processes) on one catalog and broker never double a scheduled crawl."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis
from sqlalchemy import func, select

from catalog.db import session_scope
from catalog.models import CrawlSchedule, Job
from pipeline.jobs.schedules import set_schedule
from tests.pipeline.conftest import BEAT, REDIS_URL, REPO, wait_until

pytestmark = [pytest.mark.celery, pytest.mark.postgres, pytest.mark.redis]


# what `shoal schedule tick --json` does, without the CLI's startup
TICK = ("import json; from pipeline.jobs.submit import job_dict; "
        "from pipeline.jobs.schedules import enqueue_due; "
        "print(json.dumps([job_dict(j) for j in enqueue_due()], default=str))")


def crawl_jobs() -> list[Job]:
    with session_scope() as session:
        return list(session.scalars(select(Job).where(Job.kind == "crawl").order_by(Job.id)))


def queued_messages(queue: str = "crawl") -> int:
    return redis.Redis.from_url(REDIS_URL).llen(queue)


def test_two_beats_do_not_double_a_schedule(spawn, broker_env: dict) -> None:
    with session_scope() as session:
        set_schedule(session, "hairtail", ["wikimedia", "inaturalist"], 3600)
        set_schedule(session, "chub-mackerel", ["wikimedia"], 3600)
    env = {**broker_env, "SHOAL_BEAT_INTERVAL": "0.3"}
    beats = [spawn(f"beat-{n}", BEAT, env) for n in "ab"]
    # both keep ticking: one leads, the other stands by
    wait_until(lambda: all(b.text().count(" tick") >= 6 for b in beats), what="beats ticking")
    logs = "".join(b.text() for b in beats)
    assert "leader tick" in logs and "standby tick" in logs

    jobs = crawl_jobs()
    assert len(jobs) == 3
    assert len({j.idempotency_key for j in jobs}) == 3
    assert queued_messages() == 3
    with session_scope() as session:
        last = set(session.scalars(select(CrawlSchedule.last_job_id)))
    assert last == {j.id for j in jobs}

    # the leader dies; the standby takes the lease over and serves what falls due next
    leader = next(b for b in beats if "leader tick" in b.text())
    standby = next(b for b in beats if b is not leader)
    leader.kill()
    with session_scope() as session:
        set_schedule(session, "red-seabream", ["baike"], 3600)
    # (the row is committed before the message is sent: wait for both)
    wait_until(lambda: len(crawl_jobs()) == 4 and queued_messages() == 4,
               what="the standby to queue the new schedule")
    assert "leading" in standby.text()
    assert crawl_jobs()[-1].args == {"species": "red-seabream", "source": "baike", "limit": None}


def test_concurrent_ticks_claim_each_due_run_once(broker_env: dict) -> None:
    slugs = ["hairtail", "chub-mackerel", "red-seabream", "tiger-puffer", "bombay-duck"]
    with session_scope() as session:
        for slug in slugs:
            set_schedule(session, slug, ["wikimedia"], 7 * 86400)
    ticks = [
        subprocess.Popen([sys.executable, "-c", TICK],
                         cwd=REPO, env={**os.environ, **broker_env},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [t.communicate(timeout=120) for t in ticks]
    assert all(t.returncode == 0 for t in ticks), outputs
    claimed = [job["id"] for out, _err in outputs for job in json.loads(out)]
    assert len(claimed) == len(set(claimed)) == len(slugs)
    assert len(crawl_jobs()) == len(slugs)
    assert queued_messages() == len(slugs)
    with session_scope() as session:
        advanced = session.scalar(select(func.count()).select_from(CrawlSchedule).where(
            CrawlSchedule.next_run_at > CrawlSchedule.last_run_at))
    assert advanced == len(slugs)

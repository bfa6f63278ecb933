"""The crawl -> dedupe -> review push chain on real workers, a real local site and a real
Label Studio; and a network error that is retried with backoff, then recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from catalog.db import session_scope
from catalog.models import CrawlJob, Image, ImageStatus, Job, JobState, ReviewTask
from catalog.species import SpeciesSpec, upsert_species
from labeling.project import find_project, setup_project
from pipeline.demo.site.server import serve
from pipeline.demo.site.species import WEB20_LATIN, latin_species_map
from pipeline.jobs import submit as jobs
from pipeline.jobs.flow import crawl_chain
from tests.labeling.conftest import label_studio  # noqa: F401  (the session's server)
from tests.pipeline.conftest import celery_worker, wait_until

pytestmark = [pytest.mark.celery, pytest.mark.postgres, pytest.mark.redis,
              pytest.mark.labelstudio]

FOLDER = "Mola"
CRAWL_ENV = {  # fast and deterministic on loopback
    "SHOAL_CRAWL_AUTOTHROTTLE": "0",
    "SHOAL_CRAWL_RETRY_TIMES": "0",
    "SHOAL_CRAWL_DOWNLOAD_TIMEOUT": "2",
}


def finished(job_id: int) -> Job | None:
    with session_scope() as session:
        job = session.get_one(Job, job_id)
    return job if job.state in JobState.FINISHED else None


def test_crawl_dedupe_push_chain(
    broker_env: dict, spawn, label_studio, fishdata: Path, monkeypatch  # noqa: F811
) -> None:
    env = {**broker_env, **CRAWL_ENV, "SHOAL_DATA_DIR": str(label_studio.files_root),
           "SHOAL_LABEL_STUDIO_URL": label_studio.url,
           "SHOAL_LABEL_STUDIO_TOKEN": label_studio.token}
    for key in ("SHOAL_DATA_DIR", "SHOAL_LABEL_STUDIO_URL", "SHOAL_LABEL_STUDIO_TOKEN"):
        monkeypatch.setenv(key, env[key])
    from catalog.settings import get_settings

    get_settings.cache_clear()
    client = label_studio.client()
    old = find_project(client)
    if old is not None:
        client.projects.delete(old)
    with session_scope() as session:
        upsert_species(session, [SpeciesSpec(slug="mola", latin_name=WEB20_LATIN[FOLDER],
                                             keywords={"la": [WEB20_LATIN[FOLDER]]})])
        project_id = setup_project(session, client, files_root=label_studio.files_root).project_id

    web20 = fishdata / "web-20"
    with serve(web20, latin_species_map(web20, [FOLDER]), hostile=False) as site:
        # through `shoal worker` itself once
        worker = spawn("w-chain", ["pipeline.cli", "worker", "-Q", "crawl,dedupe,review",
                                   "-P", "solo", "-n", "w-chain@%h"], {**env, **site.env()})
        worker.wait_for(" ready.")
        crawl, dedupe, push = jobs.submit_chain(crawl_chain("mola", "wikimedia", limit=8))
        assert push.kind == "review_push"  # Label Studio is configured: the chain ends there
        wait_until(lambda: finished(push.id), timeout=240, what="the chain")

    with session_scope() as session:
        rows = {j.id: j for j in session.scalars(select(Job))}
        crawl_rows = session.scalars(select(CrawlJob)).all()
        statuses = dict(session.execute(
            select(Image.status, func.count()).group_by(Image.status)).all())
        tasks = session.scalar(select(func.count()).select_from(ReviewTask))
    for job in (crawl, dedupe, push):
        assert rows[job.id].state == JobState.SUCCEEDED, rows[job.id].error
        assert rows[job.id].worker_host.startswith("w-chain@")
    assert [c.job_id for c in crawl_rows] == [crawl.id]
    assert rows[crawl.id].result["crawl_job_id"] == crawl_rows[0].id
    # every stored image was deduped, and every unique one went to review
    assert ImageStatus.DOWNLOADED not in statuses
    assert statuses.get(ImageStatus.IN_REVIEW, 0) == tasks > 0
    assert rows[push.id].result["pushed"] == tasks
    assert rows[push.id].result["project_id"] == project_id
    assert rows[dedupe.id].result is not None


def test_network_error_is_retried_with_backoff_then_recorded(broker_env: dict, spawn) -> None:
    env = {**broker_env, "SHOAL_MAX_RETRIES": "1",
           # nothing listens on the discard port: every call is refused
           "SHOAL_LABEL_STUDIO_URL": "http://127.0.0.1:9", "SHOAL_LABEL_STUDIO_TOKEN": "x"}
    worker = spawn("w-retry", celery_worker("w-retry", "review"), env)
    worker.wait_for(" ready.")
    job = jobs.submit("review_pull", {})
    done = wait_until(lambda: finished(job.id), timeout=120, what="the retried job")
    assert done.state == JobState.FAILED
    assert done.attempts == 2  # the first attempt, one retry
    assert done.error.startswith("LabelStudioUnavailable: Label Studio at http://127.0.0.1:9 "
                                 "is not reachable")
    assert "Retry in" in worker.text()  # Celery's own retry, with a countdown

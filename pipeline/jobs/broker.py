"""The Celery app: Redis broker and result backend, one queue per kind of work.

Configured lazily from ``SHOAL_*`` settings, so importing this module never needs a broker:
with ``SHOAL_BROKER_URL`` unset, :mod:`pipeline.jobs.submit` runs the same task bodies in-process.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from catalog.settings import get_settings

QUEUES = ("crawl", "dedupe", "review", "export", "train")

# job kind -> queue; the Celery task of a kind is ``pipeline.jobs.tasks.<kind>``
QUEUE_OF: dict[str, str] = {
    "crawl": "crawl",
    "import_photos": "crawl",
    "dedupe": "dedupe",
    "review_setup": "review",
    "review_push": "review",
    "review_pull": "review",
    "approve_by_keyword": "review",
    "approve_unsuspected": "review",
    "auto_accept": "review",
    "dataset_create": "export",
    "dataset_export": "export",
    "train": "train",
    # torch work beside training: the train workers have the backbone weights and the cache
    "predict": "train",
    "curate": "train",
}


def task_name(kind: str) -> str:
    return f"pipeline.jobs.tasks.{kind}"


def celery_config() -> dict[str, Any]:
    qs = get_settings().jobs
    transport = {
        "visibility_timeout": qs.visibility_timeout,
        "unacked_restore_interval": qs.unacked_restore_interval,
        # scan on every sweep, so the interval above is the real redelivery delay
        "unacked_restore_throttle": 1,
    }
    return {
        "broker_url": qs.broker_url,
        "result_backend": qs.result_backend or qs.broker_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": qs.visibility_timeout},
        "broker_connection_retry_on_startup": True,
        # a broker that is down at submit fails the submit within seconds, not minutes
        "broker_connection_timeout": 4.0,
        "task_publish_retry_policy": {"max_retries": qs.publish_retries, "interval_start": 0.2,
                                      "interval_step": 0.4, "interval_max": 1.0},
        # Shoal reads outcomes from the catalog: no result is stored, and a submit never waits
        # on the result backend (its reconnect loop took 20 s when Redis was down)
        "task_ignore_result": True,
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],
        "task_default_queue": "dedupe",
        "task_routes": {task_name(kind): {"queue": q} for kind, q in QUEUE_OF.items()},
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # a task is acked only once it finished, and put back if its worker process died
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # one message at a time per process: long jobs never wait behind a prefetched one
        "worker_prefetch_multiplier": 1,
        "task_track_started": True,
        "result_expires": 7 * 24 * 3600,
        "worker_hijack_root_logger": False,
        "beat_max_loop_interval": max(1.0, qs.beat_interval),
    }


app = Celery("shoal", include=["pipeline.jobs.tasks"])
app.add_defaults(celery_config)  # a callable: read when the config is first used, not at import

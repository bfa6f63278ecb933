"""The platform: Celery app and tasks, dedupe, dataset versions, the `shoal` CLI, the demo."""

"""`shoal config`: the settings in force."""

from __future__ import annotations

from catalog.settings import get_settings, mask_secret, mask_url
from pipeline.cli.common import (
    JSON_OPTION,
    print_json,
    print_table,
)


def config_cmd(as_json: bool = JSON_OPTION) -> None:
    """Print the settings in force (secrets masked)."""
    s = get_settings()
    data = {
        "SHOAL_DATA_DIR": str(s.data_dir),
        "SHOAL_DATABASE_URL": mask_url(s.resolved_database_url),
        "SHOAL_BROKER_URL": mask_url(s.broker_url) if s.broker_url else "(in-process)",
        "SHOAL_RESULT_BACKEND": mask_url(s.result_backend) if s.result_backend else "",
        "SHOAL_LABEL_STUDIO_URL": mask_url(s.label_studio_url) if s.label_studio_url else "",
        "SHOAL_LABEL_STUDIO_TOKEN": mask_secret(
            s.label_studio_token.get_secret_value() if s.label_studio_token else None
        ),
        "SHOAL_WEBHOOK_SECRET": mask_secret(
            s.webhook_secret.get_secret_value() if s.webhook_secret else None
        ),
        "SHOAL_MAX_LONG_SIDE": s.max_long_side,
        "SHOAL_MIN_SIDE": s.min_side,
        "SHOAL_MAX_PIXELS": s.max_pixels,
        "SHOAL_MAX_BYTES": s.max_bytes,
        "SHOAL_JPEG_QUALITY": s.jpeg_quality,
    }
    if as_json:
        print_json(data)
        return
    print_table("settings", ["name", "value"], list(data.items()))

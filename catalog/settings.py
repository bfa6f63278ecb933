"""Shoal's configuration, in one place. Every field reads ``SHOAL_<NAME>`` from the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOAL_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("shoal-data"), description="images, checkpoints, caches, SQLite")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir")
    broker_url: str | None = Field(None, description="Celery broker; unset runs tasks in-process")
    result_backend: str | None = Field(None, description="Celery result backend; default broker")
    label_studio_url: str | None = Field(None, description="Label Studio server for review")
    label_studio_token: SecretStr | None = Field(None, description="Label Studio API token")
    webhook_secret: SecretStr | None = Field(None, description="shared secret for LS webhooks")
    max_long_side: int = Field(1024, description="stored images are resized to this long side")
    min_side: int = Field(32, description="images with a shorter side are rejected as too small")
    max_pixels: int = Field(60_000_000, description="larger images are rejected before decoding")
    max_bytes: int = Field(30 * 1024 * 1024, description="larger downloads are rejected")
    jpeg_quality: int = Field(90, description="quality of re-encoded images")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def mask_secret(value: str | None) -> str:
    if not value:
        return ""
    return value[:4] + "…" if len(value) > 8 else "****"


def mask_url(url: str) -> str:
    """Hide a password inside a URL (``scheme://user:pw@host``)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL (redis://...): mask by hand
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}"
        return url

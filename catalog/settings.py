"""Shoal's configuration, in one place. Every field reads ``SHOAL_<NAME>`` from the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATABASE_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")
BROKER_SCHEMES = ("redis://", "rediss://")


class SettingsInvalid(ValueError):
    """A SHOAL_* setting has a value Shoal cannot use: one line naming it and what is allowed."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOAL_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("shoal-data"), description="images, checkpoints, caches, SQLite")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir")
    broker_url: str | None = Field(None, description="Celery broker; unset runs tasks in-process")
    result_backend: str | None = Field(None, description="Celery result backend; default broker")
    label_studio_url: str | None = Field(None, description="Label Studio server for review")
    label_studio_token: SecretStr | None = Field(None, description="Label Studio API token")
    webhook_secret: SecretStr | None = Field(None, description="shared secret for LS webhooks")
    max_long_side: int = Field(1024, gt=0, description="stored images are resized to this long "
                               "side")
    min_side: int = Field(32, gt=0, description="images with a shorter side are rejected as too "
                          "small")
    max_pixels: int = Field(60_000_000, gt=0, description="larger images are rejected before "
                            "decoding")
    max_bytes: int = Field(30 * 1024 * 1024, gt=0, description="larger downloads are rejected")
    jpeg_quality: int = Field(90, ge=1, le=95, description="quality of re-encoded images "
                              "(Pillow advises at most 95)")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, url: str | None) -> str | None:
        if not url:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            driver = make_url(url).drivername
        except ArgumentError:
            raise ValueError("not a database URL (e.g. postgresql+psycopg://user@host/db or "
                             "sqlite:///path/catalog.db)") from None
        if driver not in DATABASE_DRIVERS:
            raise ValueError(f"database {driver!r} is not supported: use one of "
                             f"{', '.join(DATABASE_DRIVERS)}")
        return url

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(BROKER_SCHEMES):
            raise ValueError(f"must be a Redis URL ({' or '.join(BROKER_SCHEMES)}...)")
        return url or None

    @model_validator(mode="after")
    def _sides_agree(self) -> Settings:
        if self.min_side > self.max_long_side:
            raise ValueError(f"SHOAL_MIN_SIDE ({self.min_side}) is larger than "
                             f"SHOAL_MAX_LONG_SIDE ({self.max_long_side})")
        return self

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
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsInvalid(describe_invalid(exc)) from None


def describe_invalid(exc: ValidationError) -> str:
    """``SHOAL_MAX_PIXELS='abc': Input should be a valid integer`` for the first bad field
    (and how many more there are)."""
    errors = exc.errors()
    first = errors[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    name = f"SHOAL_{field.upper()}" if field else "a setting"
    value = first.get("input")
    shown = mask_url(str(value)) if isinstance(value, str) and "://" in value else value
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if not field:
        return f"invalid settings: {message}{more}"
    return f"{name}={shown!r}: {message}{more}"


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

"""Shoal's configuration: one tree, read here and nowhere else.

Sections: ``catalog`` (data dir, database, image limits), ``crawl``, ``review`` (Label Studio),
``train``, ``jobs`` (broker and queue), ``serve`` and ``demo``. Every field reads one
``SHOAL_*`` variable (or the ``.env`` file); the names are flat and stable (``SHOAL_DATA_DIR``,
``SHOAL_CRAWL_CONCURRENCY``, ``SHOAL_SERVE_PORT``), the section only groups them.
:func:`get_settings` is cached and re-reads when a ``SHOAL_*`` variable or ``.env`` changes, so
a test or a command that sets one sees it at once. A value out of its range is one
:class:`SettingsInvalid` line naming the variable.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from catalog.addresses import parse_allow_entry

ENV_PREFIX = "SHOAL_"
DATABASE_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")
BROKER_SCHEMES = ("redis://", "rediss://")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SITE_ENV_PREFIX = "SHOAL_CRAWL_SITE_"

USER_AGENT = (
    "Shoal/0.1 (fish-species image dataset crawler; respects robots.txt; "
    "+https://github.com/shoal-fish/shoal)"
)


class SettingsInvalid(ValueError):
    """A SHOAL_* setting has a value Shoal cannot use: one line naming it and what is allowed."""


class _Section(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")
    # fields that hold secrets: a bad value of one is never echoed in the error
    secrets: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def env_name(cls, field: str) -> str:
        info = cls.model_fields[field]
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
        if isinstance(alias, str):
            return alias
        return (str(cls.model_config.get("env_prefix", "")) + field).upper()


class CatalogSettings(_Section):
    data_dir: Path = Field(Path("shoal-data"), description="images, checkpoints, caches, SQLite")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir")
    max_long_side: int = Field(1024, gt=0, description="stored images are resized to this long "
                               "side")
    min_side: int = Field(32, gt=0, description="images with a shorter side are rejected as too "
                          "small")
    max_pixels: int = Field(60_000_000, gt=0, description="larger images are rejected before "
                            "decoding")
    max_bytes: int = Field(30 * 1024 * 1024, gt=0, description="larger downloads are rejected")
    jpeg_quality: int = Field(90, ge=1, le=95, description="quality of re-encoded images "
                              "(Pillow advises at most 95)")

    @field_validator("data_dir")
    @classmethod
    def _writable_dir(cls, path: Path) -> Path:
        """A data dir Shoal could never write is refused now, not at the first image. Nothing is
        created here: the nearest existing folder must be a writable directory."""
        existing = path.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(f"{existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"{existing} is not writable")
        return path

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

    @model_validator(mode="after")
    def _sides_agree(self) -> CatalogSettings:
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


class CrawlSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="SHOAL_CRAWL_", env_file=".env", extra="ignore")

    user_agent: str = Field(USER_AGENT, min_length=1,
                            description="User-Agent sent with every request")
    obey_robots: bool = Field(True, description="obey robots.txt (ROBOTSTXT_OBEY)")
    autothrottle: bool = Field(True, description="Scrapy AutoThrottle on")
    autothrottle_start_delay: float = Field(1.0, ge=0, le=600,
                                            description="first delay per site, seconds")
    autothrottle_target_concurrency: float = Field(2.0, gt=0, le=64,
                                                   description="parallel requests per site")
    concurrency: int = Field(16, ge=1, le=512, description="CONCURRENT_REQUESTS")
    concurrency_per_domain: int = Field(4, ge=1, le=64,
                                        description="CONCURRENT_REQUESTS_PER_DOMAIN")
    download_timeout: float = Field(30.0, gt=0, le=3600,
                                    description="seconds before a download times out")
    retry_times: int = Field(2, ge=0, le=20, description="retries of a failed request")
    redirect_max_times: int = Field(5, ge=0, le=50,
                                    description="redirects followed before giving up")
    httpcache: bool = Field(False, description="keep an HTTP cache under <data dir>/http-cache")
    ingest_workers: int = Field(0, ge=0, le=256,
                                description="processes normalising images; 0: CPU count")
    log_level: str = Field("INFO", description="Scrapy log level in the crawl log")
    allow_private_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated ADDR[:PORT], [IPv6]:PORT, ADDR/BITS or *: non-public "
                    "addresses the crawler may fetch from (tests and the demo: their local site)")
    profile_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="colon-separated folders of shop profiles, searched "
                                          "before the built-in ones")
    # SHOAL_CRAWL_SITE_<NAME>=URL, collected by load_settings (the names are open-ended)
    sites: dict[str, str] = Field(default_factory=dict, description="base URL overrides by site "
                                  "(SHOAL_CRAWL_SITE_<NAME>)")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level.upper() not in LOG_LEVELS:
            raise ValueError(f"use one of {', '.join(LOG_LEVELS)}")
        return level.upper()

    @field_validator("allow_private_hosts", mode="before")
    @classmethod
    def _split_entries(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.replace(" ", ",").split(",") if part]
        if isinstance(value, list):
            for entry in value:
                parse_allow_entry(str(entry))  # a bad entry fails here, with its text
        return value

    @field_validator("profile_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part]
        return value

    @field_validator("sites")
    @classmethod
    def _http_urls(cls, sites: dict[str, str]) -> dict[str, str]:
        for name, url in sites.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{site_env_name(name)}: not an http(s) URL: {url!r}")
        return {name: url.rstrip("/") for name, url in sites.items()}


class ReviewSettings(_Section):
    secrets = ("label_studio_token", "webhook_secret")

    label_studio_url: str | None = Field(None, description="Label Studio server for review")
    label_studio_token: SecretStr | None = Field(None, description="Label Studio API token")
    webhook_secret: SecretStr | None = Field(None, description="shared secret for LS webhooks")

    @field_validator("label_studio_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL (e.g. http://127.0.0.1:8080)")
        return url.rstrip("/") if url else None


class TrainSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="SHOAL_TRAIN_", env_file=".env", extra="ignore")

    workers: int = Field(0, ge=0, le=64, description="data-loading processes of a training run "
                         "when its recipe does not say (0: load in the training process)")
    threads: int = Field(0, ge=0, le=1024, description="torch threads of a training run (0: "
                         "torch's default, one per core)")


class JobsSettings(_Section):
    broker_url: str | None = Field(None, description="Celery broker; unset runs tasks in-process")
    result_backend: str | None = Field(None, description="Celery result backend; default broker")
    # The study's slowest model (ResNet101, 10 epochs) took 5.7 h on a laptop CPU: an unacked
    # message is handed to another worker only after this long, so it must outlast any job.
    visibility_timeout: int = Field(12 * 3600, ge=1, description="seconds before an unacked "
                                    "task is redelivered; longer than the longest training job")
    unacked_restore_interval: int = Field(10, ge=1, le=3600,
                                          description="seconds between redelivery sweeps")
    job_lease_seconds: int = Field(60, ge=1, le=3600, description="a running job's heartbeat "
                                   "lease; a job whose worker died is taken over after this long")
    max_retries: int = Field(5, ge=0, le=100,
                             description="retries of a task that hit a network error")
    retry_backoff_max: int = Field(600, ge=1, le=86400,
                                   description="cap of the exponential retry backoff (s)")
    beat_interval: float = Field(30.0, gt=0, le=86400,
                                 description="seconds between beat's catalog reads")
    sweep_interval: float = Field(60.0, ge=0, le=86400, description="seconds between sweeps for "
                                  "jobs the broker lost (one process of beat and the workers "
                                  "sweeps); 0: workers do not sweep")
    job_lost_after: float = Field(300.0, gt=0, le=7 * 86400, description="a queued job whose "
                                  "message the broker does not hold is sent again after this long")
    max_recoveries: int = Field(3, ge=0, le=100, description="times a lost job is sent again "
                                "before it is failed")
    publish_retries: int = Field(2, ge=0, le=20, description="retries of a message the broker "
                                 "refused at submit, a fraction of a second apart")

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(BROKER_SCHEMES):
            raise ValueError(f"must be a Redis URL ({' or '.join(BROKER_SCHEMES)}...)")
        return url or None


class ServeSettings(_Section):
    model_config = SettingsConfigDict(env_prefix="SHOAL_SERVE_", env_file=".env", extra="ignore")
    secrets = ("api_token",)

    api_token: SecretStr | None = Field(None, validation_alias=AliasChoices("SHOAL_API_TOKEN"),
                                        description="bearer token every write needs")
    host: str = Field("127.0.0.1", min_length=1, description="address `shoal serve` binds")
    port: int = Field(8000, ge=1, le=65535, description="port `shoal serve` binds")
    max_files: int = Field(16, ge=1, le=1024, description="images one predict request may carry")
    max_batch: int = Field(32, ge=1, le=1024, description="images the model runs on at once")
    timeout: float = Field(10.0, gt=0, le=3600, description="seconds a client has for a "
                           "request's headers (from connecting or its last response) and again "
                           "for the start of its body")

    @property
    def token(self) -> str | None:
        return self.api_token.get_secret_value() or None if self.api_token else None


class DemoSettings(_Section):
    recorded: Path | None = Field(None, description="recorded responses the local demo and test "
                                  "site serves (default ../shared/recorded beside the checkout)")


class Settings(BaseModel):
    """The whole tree; sections in the order ``shoal config`` prints them."""

    catalog: CatalogSettings
    crawl: CrawlSettings
    review: ReviewSettings
    train: TrainSettings
    jobs: JobsSettings
    serve: ServeSettings
    demo: DemoSettings

    # the catalog section's values are what most code asks for
    @property
    def data_dir(self) -> Path:
        return self.catalog.data_dir

    @property
    def image_dir(self) -> Path:
        return self.catalog.image_dir

    @property
    def resolved_database_url(self) -> str:
        return self.catalog.resolved_database_url


SECTIONS: dict[str, type[_Section]] = {
    "catalog": CatalogSettings, "crawl": CrawlSettings, "review": ReviewSettings,
    "train": TrainSettings, "jobs": JobsSettings, "serve": ServeSettings, "demo": DemoSettings,
}


def site_env_name(name: str) -> str:
    return SITE_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]+", "_", name).upper().strip("_")


def load_settings() -> Settings:
    """Read every section now."""
    built: dict[str, _Section] = {}
    for name, section in SECTIONS.items():
        values = {"sites": _site_overrides()} if name == "crawl" else {}
        try:
            built[name] = section(**values)
        except ValidationError as exc:
            raise SettingsInvalid(describe_invalid(exc, section)) from None
        except ValueError as exc:  # pydantic-settings could not decode a value (bad JSON)
            raise SettingsInvalid(str(exc)) from None
    return Settings(**built)


def _site_overrides() -> dict[str, str]:
    """``SHOAL_CRAWL_SITE_GBIF_API=http://...`` -> ``{"GBIF_API": "http://..."}``."""
    return {key.removeprefix(SITE_ENV_PREFIX): value
            for key, value in os.environ.items() if key.startswith(SITE_ENV_PREFIX) and value}


def _fingerprint() -> tuple[Any, ...]:
    """What the settings are read from: the SHOAL_* variables, and .env in the working dir."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX)))
    try:
        dotenv = Path(".env").stat()
        stamp: tuple[Any, ...] = (dotenv.st_mtime_ns, dotenv.st_size)
    except OSError:
        stamp = ()
    return env, os.getcwd(), stamp


@lru_cache(maxsize=8)
def _settings_for(fingerprint: tuple[Any, ...]) -> Settings:
    return load_settings()


def get_settings() -> Settings:
    return _settings_for(_fingerprint())


get_settings.cache_clear = _settings_for.cache_clear  # type: ignore[attr-defined]


def child_env(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a child process (a crawl, Label Studio, a server) starts with: ours,
    settings included, with ``overrides`` on top."""
    return {**os.environ, **(overrides or {})}


def describe_invalid(exc: ValidationError, section: type[_Section] = CatalogSettings) -> str:
    """``SHOAL_MAX_PIXELS='abc': Input should be a valid integer`` for the first bad field
    (and how many more there are)."""
    errors = exc.errors()
    first = errors[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    if field in section.model_fields:
        name = section.env_name(field)
    else:
        name = f"{ENV_PREFIX}{field.upper()}" if field else ""
    value = first.get("input")
    shown = mask_url(str(value)) if isinstance(value, str) and "://" in value else value
    if field and field in section.secrets:
        shown = "****"
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if not name:
        return f"invalid settings: {message}{more}"
    if field == "sites":
        return f"{message}{more}"
    return f"{name}={shown!r}: {message}{more}"


def shown_settings(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every section's variables and values as ``shoal config`` prints them: secrets masked,
    passwords inside URLs hidden, the default database spelled out."""
    shown: dict[str, dict[str, Any]] = {}
    for name, cls in SECTIONS.items():
        section = getattr(settings, name)
        values: dict[str, Any] = {}
        for field in cls.model_fields:
            value = getattr(section, field)
            if field == "sites":
                for site, url in sorted(value.items()):
                    values[SITE_ENV_PREFIX + site] = url
                continue
            values[cls.env_name(field)] = _shown(value)
        if name == "catalog":
            values["SHOAL_DATABASE_URL"] = mask_url(section.resolved_database_url)
        if name == "jobs" and not section.broker_url:
            values["SHOAL_BROKER_URL"] = "(in-process)"
        shown[name] = values
    return shown


def _shown(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return mask_secret(value.get_secret_value())
    if value is None:
        return ""
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


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

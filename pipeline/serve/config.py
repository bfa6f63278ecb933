"""The serve settings, read in one place: ``SHOAL_API_TOKEN``, ``SHOAL_SERVE_HOST``,
``SHOAL_SERVE_PORT`` and the prediction limits."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class _ServeEnv(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOAL_", env_file=".env", extra="ignore")

    api_token: SecretStr | None = Field(None, description="bearer token every write needs")
    serve_host: str = Field("127.0.0.1", description="address `shoal serve` binds")
    serve_port: int = Field(8000, description="port `shoal serve` binds")
    serve_max_files: int = Field(16, description="images one predict request may carry")
    serve_max_batch: int = Field(32, description="images the model runs on at once")


@dataclass(frozen=True)
class ServeConfig:
    api_token: str | None
    host: str
    port: int
    max_files: int
    max_batch: int


@lru_cache(maxsize=1)
def serve_config() -> ServeConfig:
    env = _ServeEnv()
    token = env.api_token.get_secret_value() if env.api_token else None
    return ServeConfig(token or None, env.serve_host, env.serve_port, env.serve_max_files,
                       env.serve_max_batch)

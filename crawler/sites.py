"""The crawler's own settings (``SHOAL_CRAWL_*``) and where each site lives.

Every site a spider talks to has a default public base URL and can be pointed elsewhere with
``SHOAL_CRAWL_SITE_<NAME>`` (NAME upper-cased, non-alphanumerics as ``_``): that is how the tests,
the benchmark and the demo point every spider at the local test site on loopback.
"""

from __future__ import annotations

import os
import re
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from crawler.addresses import parse_allow_entry

USER_AGENT = (
    "Shoal/0.1 (fish-species image dataset crawler; respects robots.txt; "
    "+https://github.com/shoal-fish/shoal)"
)

DEFAULT_SITES: dict[str, str] = {
    "wikipedia_en": "https://en.wikipedia.org",
    "wikipedia_zh": "https://zh.wikipedia.org",
    "commons": "https://commons.wikimedia.org",
    "inaturalist_api": "https://api.inaturalist.org/v1",
    "gbif_api": "https://api.gbif.org/v1",
    "gbif": "https://www.gbif.org",
}


class CrawlSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOAL_CRAWL_", env_file=".env", extra="ignore")

    user_agent: str = Field(USER_AGENT, description="User-Agent sent with every request")
    obey_robots: bool = Field(True, description="obey robots.txt (ROBOTSTXT_OBEY)")
    autothrottle: bool = Field(True, description="Scrapy AutoThrottle on")
    autothrottle_start_delay: float = Field(1.0, description="first delay per site, seconds")
    autothrottle_target_concurrency: float = Field(2.0, description="parallel requests per site")
    concurrency: int = Field(16, description="CONCURRENT_REQUESTS")
    concurrency_per_domain: int = Field(4, description="CONCURRENT_REQUESTS_PER_DOMAIN")
    download_timeout: float = Field(30.0, description="seconds before a download times out")
    retry_times: int = Field(2, description="retries of a failed request")
    redirect_max_times: int = Field(5, description="redirects followed before giving up")
    httpcache: bool = Field(False, description="keep an HTTP cache under <data dir>/http-cache")
    ingest_workers: int = Field(0, description="processes normalising images; 0: CPU count")
    log_level: str = Field("INFO", description="Scrapy log level in the crawl log")
    allow_private_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated ADDR[:PORT], [IPv6]:PORT, ADDR/BITS or *: non-public "
                    "addresses the crawler may fetch from (tests and the demo: their local site)")

    @field_validator("allow_private_hosts", mode="before")
    @classmethod
    def _split_entries(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.replace(" ", ",").split(",") if part]
        if isinstance(value, list):
            for entry in value:
                parse_allow_entry(str(entry))  # a bad entry fails here, with its text
        return value


def get_crawl_settings() -> CrawlSettings:
    return CrawlSettings()


def site_env_name(name: str) -> str:
    return "SHOAL_CRAWL_SITE_" + re.sub(r"[^A-Za-z0-9]+", "_", name).upper().strip("_")


def site_url(name: str, default: str | None = None) -> str:
    """Base URL of site ``name``: the environment override, else ``default``, else built-in."""
    url = os.environ.get(site_env_name(name)) or default or DEFAULT_SITES.get(name)
    if not url:
        raise KeyError(f"no base URL for site '{name}' (set {site_env_name(name)})")
    return url.rstrip("/")

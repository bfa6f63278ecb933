"""Site profiles: a YAML file per encyclopedia or shop, so a new site is a profile, not code.

Profiles are looked up by name in the folders of ``SHOAL_CRAWL_PROFILE_DIRS`` (``:``-separated)
and then in this package. ``base_url`` is overridden by ``SHOAL_CRAWL_SITE_<SITE KEY>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from crawler.sites import site_env_name, site_url

HERE = Path(__file__).parent


class ProfileError(ValueError):
    """A profile that is missing or malformed; the message says which and why."""


class ShopSelectors(BaseModel):
    item: str  # CSS: one element per product in the search results
    image: str = "img"  # CSS inside the item: the <img> (largest srcset/data-src wins)
    title: str | None = None  # CSS inside the item, e.g. "a.title::text"
    link: str | None = None  # CSS inside the item: product page, e.g. "a::attr(href)"
    next_page: str | None = None  # CSS on the page: the next results page


class ArticleSelectors(BaseModel):
    title: str | None = "h1::text"
    summary_image: str | None = None  # CSS of the lead <img>
    album_link: str | None = None  # CSS of the album page URL, e.g. "a.album::attr(href)"
    album_image: str | None = None  # CSS of every <img> on an album page
    album_next: str | None = None  # CSS of the album's next page URL


class Profile(BaseModel):
    name: str
    kind: Literal["shop", "encyclopedia"]
    site: str  # what image_sources.site says, e.g. "baike.baidu.com"
    base_url: str
    search_url: str  # with {base} and {keyword}: a search (shop) or an article (encyclopedia)
    languages: list[str] = Field(default_factory=lambda: ["zh", "en", "la"])
    max_pages: int = 3
    license: str | None = None  # when the site states one for all its images
    shop: ShopSelectors | None = None
    article: ArticleSelectors | None = None

    @field_validator("search_url")
    @classmethod
    def _has_keyword(cls, value: str) -> str:
        if "{keyword}" not in value:
            raise ValueError("search_url must contain {keyword}")
        return value

    @property
    def site_key(self) -> str:
        return self.name if self.kind == "encyclopedia" else f"shop_{self.name}"

    @property
    def env_name(self) -> str:
        return site_env_name(self.site_key)

    def url_for(self, keyword: str) -> str:
        from urllib.parse import quote

        base = site_url(self.site_key, self.base_url)
        return self.search_url.format(base=base, keyword=quote(keyword))


def profile_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("SHOAL_CRAWL_PROFILE_DIRS", "").split(":") if p]
    return [*extra, HERE]


def available_profiles(kind: str | None = None) -> list[str]:
    names: dict[str, None] = {}
    for folder in profile_dirs():
        for path in sorted(folder.glob("*.yaml")):
            try:
                if kind is None or load_profile(path.stem).kind == kind:
                    names.setdefault(path.stem, None)
            except ProfileError:
                continue
    return list(names)


def load_profile(name: str, kind: str | None = None) -> Profile:
    for folder in profile_dirs():
        path = folder / f"{name}.yaml"
        if path.is_file():
            break
    else:
        known = ", ".join(available_profiles(kind)) or "none"
        raise ProfileError(f"no site profile named '{name}' (known: {known})")
    try:
        profile = Profile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ProfileError(f"{path}: invalid profile: {exc}") from exc
    if kind is not None and profile.kind != kind:
        raise ProfileError(f"{path}: profile '{name}' is a {profile.kind}, not a {kind}")
    if profile.kind == "shop" and profile.shop is None:
        raise ProfileError(f"{path}: a shop profile needs 'shop:' selectors")
    if profile.kind == "encyclopedia" and profile.article is None:
        raise ProfileError(f"{path}: an encyclopedia profile needs 'article:' selectors")
    return profile

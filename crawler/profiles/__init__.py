"""Site profiles: a YAML file per encyclopedia or shop, so a new site is a profile, not code.

Profiles are looked up by name in the folders of ``SHOAL_CRAWL_PROFILE_DIRS`` (``:``-separated)
and then in this package. ``base_url`` is overridden by ``SHOAL_CRAWL_SITE_<SITE KEY>``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from catalog.settings import get_settings, site_env_name
from crawler.sites import site_url

HERE = Path(__file__).parent


class ProfileError(ValueError):
    """A profile that is missing or malformed; the message says which and why."""


Css = list[str]  # alternatives, tried in order: the first that matches anything is used


def _alternatives(value: Any) -> Any:
    """A selector may be one CSS string or a list of alternatives (old and new layouts)."""
    return [value] if isinstance(value, str) else value


class Selectors(BaseModel):
    @field_validator("*", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        return _alternatives(value)


class ShopSelectors(Selectors):
    item: Css  # CSS: one element per product in the search results
    image: Css = ["img"]  # CSS inside the item: the <img> (largest srcset/data-src wins)
    title: Css = []  # CSS inside the item, e.g. "a.title::text"
    link: Css = []  # CSS inside the item: product page, e.g. "a::attr(href)"
    next_page: Css = []  # CSS on the page: the next results page


class ArticleSelectors(Selectors):
    title: Css = ["h1::text"]
    summary_image: Css = []  # CSS of the lead <img>
    album_link: Css = []  # CSS of the album page URL, e.g. "a.album::attr(href)"
    album_image: Css = []  # CSS of every <img> on an album page
    album_next: Css = []  # CSS of the album's next page URL


class Rewrite(BaseModel):
    pattern: str  # a regular expression on the image URL
    replace: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        re.compile(value)
        return value


class Profile(BaseModel):
    name: str
    kind: Literal["shop", "encyclopedia"]
    site: str  # what image_sources.site says, e.g. "baike.baidu.com"
    base_url: str
    search_url: str  # with {base} and {keyword}: a search (shop) or an article (encyclopedia)
    languages: list[str] = Field(default_factory=lambda: ["zh", "en", "la"])
    max_pages: int = 3
    license: str | None = None  # when the site states one for all its images
    # hosts the source fetches images from besides its own site (CDNs): with the site's, the
    # only hosts a crawl of it may fetch (``allowed_hosts``)
    image_hosts: list[str] = Field(default_factory=list)
    # query parameters removed from image URLs (a thumbnail transform such as Baidu's
    # x-bce-process=image/resize,...,w_268) and regular-expression rewrites, in order
    image_url_drop_params: list[str] = Field(default_factory=list)
    image_url_rewrites: list[Rewrite] = Field(default_factory=list)
    # a product link that is a click-tracking redirect carries the real page in this query
    # parameter (e.g. "url"): the page URL is unwrapped, the link as found is kept too
    link_param: str | None = None
    # crawled by `shoal crawl` without --source (general marketplaces: only when named)
    crawl_by_default: bool = True
    # the recorded page this profile's selectors are tested on (under ../shared/recorded/)
    fixture: str | None = None
    fixture_keyword: str | None = None
    shop: ShopSelectors | None = None
    article: ArticleSelectors | None = None

    @field_validator("search_url")
    @classmethod
    def _has_keyword(cls, value: str) -> str:
        if "{keyword}" not in value:
            raise ValueError("search_url must contain {keyword}")
        return value

    @field_validator("image_hosts")
    @classmethod
    def _bare_hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not host.strip() or any(c in host for c in "/@?# "):
                raise ValueError(f"image_hosts takes host names, not URLs: {host!r}")
        return value

    @property
    def site_key(self) -> str:
        return self.name if self.kind == "encyclopedia" else f"shop_{self.name}"

    @property
    def env_name(self) -> str:
        return site_env_name(self.site_key)

    def url_for(self, keyword: str) -> str:
        base = site_url(self.site_key, self.base_url)
        return self.search_url.format(base=base, keyword=quote(keyword))

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """The public hosts a crawl of this site fetches: its own and its image CDNs."""
        own = urlsplit(self.base_url).hostname or self.site
        return tuple(dict.fromkeys([own, self.site, *self.image_hosts]))

    def full_image_url(self, url: str) -> str:
        """The image URL without the thumbnail transforms the profile names."""
        if self.image_url_drop_params:
            parts = urlsplit(url)
            query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                     if k not in self.image_url_drop_params]
            url = urlunsplit(parts._replace(query=urlencode(query, safe="/,:")))
        for rule in self.image_url_rewrites:
            url = re.sub(rule.pattern, rule.replace, url)
        return url

    def unwrap_link(self, url: str) -> str:
        """The page a click-tracking link leads to (its ``link_param``), else the link."""
        if not self.link_param:
            return url
        values = parse_qs(urlsplit(url).query).get(self.link_param)
        target = values[0] if values else ""
        return target if urlsplit(target).scheme in ("http", "https") else url


def profile_dirs() -> list[Path]:
    return [*get_settings().crawl.profile_dirs, HERE]


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

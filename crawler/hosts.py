"""The hosts a source may fetch from: the public hosts it declares and its sites as configured.

A spider declares its public hosts (``hosts``: its APIs, pages and image CDNs; ``None`` for any
public host, an aggregator whose media live on its publishers' servers, GBIF); a profile
spider's are the profile's (``Profile.allowed_hosts``: its site and ``image_hosts:``). Besides
those, the host each of its sites is configured at (``site_keys`` and a profile's site, each
through ``site_url``) is allowed, so a ``SHOAL_CRAWL_SITE_*`` override (a mirror, the local test
site) is reachable. A name matches an allowed host when it is that host or one of its subdomains
(``upload.wikimedia.org`` allows ``x.upload.wikimedia.org``, not ``wikimedia.org``); ``*``
allows any host. Whatever the host, the address check (``catalog.addresses``) still applies.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from crawler.profiles import Profile, load_profile
from crawler.sites import site_url
from crawler.sources import spider_for
from crawler.spiders import ShoalSpider
from crawler.spiders.base import ProfileSpider

ANY = "*"


def normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def host_of(url: str) -> str:
    return normal_host(urlsplit(url).hostname or "")


def spider_hosts(spider_cls: type[ShoalSpider], profile: Profile | None) -> frozenset[str]:
    declared = profile.allowed_hosts if profile is not None else spider_cls.hosts
    hosts = {host_of(site_url(key)) for key in spider_cls.site_keys}
    if profile is not None:
        hosts.add(host_of(site_url(profile.site_key, profile.base_url)))
    hosts.update([ANY] if declared is None else declared)
    return frozenset(h for h in map(normal_host, hosts) if h)


def allowed_hosts(source: str, profile: Profile | None = None) -> frozenset[str]:
    """The hosts crawling ``source`` (``wikimedia``, ``shop:market``, ...) may fetch from."""
    spider_cls, kwargs = spider_for(source)
    if profile is None and issubclass(spider_cls, ProfileSpider):
        name = kwargs.get("profile") or spider_cls.default_profile
        assert name is not None
        profile = load_profile(name, kind=spider_cls.profile_kind)
    return spider_hosts(spider_cls, profile)


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    name = normal_host(host)
    return bool(name) and (ANY in allowed
                           or any(name == a or name.endswith("." + a) for a in allowed))

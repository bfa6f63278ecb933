"""Keep a crawl on its source's hosts and off private addresses, on every request.

``ConfinementMiddleware`` is the first downloader middleware, so it sees every request before
anything is sent: the spider's pages, the media pipeline's images, robots.txt fetches, and each
redirect hop (``RedirectMiddleware`` returns a new request, which the engine sends through the
whole middleware chain again). Scrapy's own ``OffsiteMiddleware`` is not enough: it passes
``dont_filter`` requests (every start request here) and knows nothing of addresses.

A request is refused, in this order, when its URL is not http(s) with a host
(``unsupported_url``), its host is not one of the source's (``offsite``, ``crawler.hosts``), or
its host resolves to an address that is not public (``private_address``, ``catalog.addresses``)
and is not on ``SHOAL_CRAWL_ALLOW_PRIVATE_HOSTS``. Names are resolved with the reactor's
resolver, the one (and the cache) the download then connects with, so the address checked is
the address fetched; legacy spellings (``2130706433``, ``0177.0.0.1``, ``0x7f000001``) resolve
to the address they mean and are checked as such. Each refusal is counted as
``shoal/refused/<reason>`` and fails the request with ``RequestRefused`` (recorded as that
reason on the page or image).
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from scrapy import Request, signals
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached

from catalog.addresses import IPAddress, canonical, literal_address, parse_allow_list, refusal
from catalog.imaging import Reject
from crawler.failures import RequestRefused
from crawler.hosts import host_allowed, spider_hosts

logger = logging.getLogger(__name__)
DEFAULT_PORTS = {"http": 80, "https": 443}


class ConfinementMiddleware:
    """Settings: ``SHOAL_ALLOW_PRIVATE_HOSTS`` (list of allow entries, ``catalog.addresses``)."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler
        self.allowed_private = parse_allow_list(
            crawler.settings.getlist("SHOAL_ALLOW_PRIVATE_HOSTS"))
        self.hosts: frozenset[str] = frozenset()
        self.logged: set[tuple[str, str]] = set()  # (reason, host): one log line each
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)

    @classmethod
    def from_crawler(cls, crawler: Any) -> ConfinementMiddleware:
        return cls(crawler)

    def spider_opened(self, spider: Any) -> None:
        self.hosts = spider_hosts(type(spider), getattr(spider, "profile", None))
        logger.info("fetching only from %s", ", ".join(sorted(self.hosts)))

    async def process_request(self, request: Request) -> None:
        url = urlparse_cached(request)
        host = url.hostname or ""
        try:
            port = url.port or DEFAULT_PORTS.get(url.scheme)
        except ValueError:
            port = None
        if url.scheme not in DEFAULT_PORTS or not host or port is None:
            self._refuse(request, Reject.UNSUPPORTED_URL, f"cannot fetch {request.url[:200]}", host)
        if not host_allowed(host, self.hosts):
            self._refuse(request, Reject.OFFSITE, f"{host} is not a host of this source", host)
        address = literal_address(host)
        if address is None:
            address = await self._resolve(host)
        why = refusal(address, port, self.allowed_private)
        if why:
            self._refuse(request, Reject.PRIVATE_ADDRESS, f"{host}: {why}", host)

    async def _resolve(self, host: str) -> IPAddress:
        from twisted.internet import reactor

        return canonical(await maybe_deferred_to_future(reactor.resolve(host)))

    def _refuse(self, request: Request, reason: str, detail: str, host: str) -> NoReturn:
        self.crawler.stats.inc_value(f"shoal/refused/{reason}")
        if (reason, host) not in self.logged:  # a page can name a host ten thousand times
            self.logged.add((reason, host))
            logger.warning("refused %s (%s; further refusals of this host are only counted)",
                           request.url[:200], detail)
        raise RequestRefused(reason, detail)

"""robots.txt for every request, concurrent ones included.

Scrapy's ``RobotsTxtMiddleware`` (checked in 2.19.0) keeps one ``Deferred`` per host while that
host's robots.txt is being fetched, and every request that arrives meanwhile awaits that same
``Deferred`` through ``maybe_deferred_to_future``. Under the asyncio reactor that is
``Deferred.asFuture``, whose callback hands the result to its future and returns ``None``: the
next waiter's callback in the chain receives ``None`` instead of the parser, and
``process_request_2(None, ...)`` lets the request through unchecked. So of N concurrent first
requests to a new host, the one that started the fetch and the first waiter are checked and the
other N - 2 are sent whatever robots.txt says (4 of 6 disallowed images were fetched). A
waiter's cancellation also cancels the shared ``Deferred`` for all of them.

``RobotsTxtMiddleware`` here gives each waiter its own ``Deferred``, fed by a callback that
passes the parser on unchanged, so every waiter gets the parser and a cancellation stays its
own. The rest (fetching, parsing, errors, stats) is Scrapy's.
"""

from __future__ import annotations

from typing import Any

from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware as ScrapyRobotsTxt
from scrapy.http import Request
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred


def _branch(shared: Deferred[Any]) -> Deferred[Any]:
    """A ``Deferred`` of its own that fires with ``shared``'s result, leaving that result
    in place for the callbacks after it."""
    own: Deferred[Any] = Deferred()

    def relay(result: Any) -> Any:
        own.callback(result)
        return result

    shared.addCallback(relay)
    return own


class RobotsTxtMiddleware(ScrapyRobotsTxt):
    async def robot_parser(self, request: Request) -> Any:
        pending = self._parsers.get(urlparse_cached(request).netloc)
        if isinstance(pending, Deferred):
            return await maybe_deferred_to_future(_branch(pending))
        return await super().robot_parser(request)

"""Why a URL could not be fetched, as a catalog reason (``catalog.imaging.Reject``)."""

from __future__ import annotations

from dataclasses import dataclass

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import Request
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.defer import CancelledError
from twisted.internet.error import TimeoutError as TxTimeoutError
from twisted.python.failure import Failure

from catalog.imaging import Reject

RECEIVED = "shoal_received_bytes"  # request.meta: body bytes received so far


def count_received(data: bytes, request: Request, **_kw: object) -> None:
    """A ``bytes_received`` handler: how much of each body arrived. Scrapy cancels a body with
    no Content-Length once it passes DOWNLOAD_MAXSIZE, and the failure that reaches us is a
    bare CancelledError; this count is what tells that cut from any other cancel."""
    request.meta[RECEIVED] = request.meta.get(RECEIVED, 0) + len(data)


class RequestRefused(IgnoreRequest):
    """A request the crawler would not send (``crawler.confinement``), with its reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class UrlFailure:
    reason: str
    detail: str
    http_status: int | None = None


def _root(exc: BaseException) -> BaseException:
    """The first cause: media pipelines wrap the download error in their own exception."""
    seen = 0
    while exc.__cause__ is not None and seen < 8:
        exc, seen = exc.__cause__, seen + 1
    return exc


def _over_size_text(exc: BaseException) -> str | None:
    """The message of a size-cap refusal anywhere in the chain: a gzip (or other encoded) body
    that inflates past DOWNLOAD_MAXSIZE is an IgnoreRequest caused by Scrapy's private
    decompression error."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, IgnoreRequest) and "DOWNLOAD_MAXSIZE" in str(seen):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def classify(error: BaseException | Failure, received: int | None = None,
             max_size: int | None = None) -> UrlFailure:
    """The reason for a failed download; ``received`` and ``max_size`` (the bytes that came
    and the size cap) let a body cut off at the cap be told apart from other cancels."""
    exc = error.value if isinstance(error, Failure) else error
    assert exc is not None
    if (too_large := _over_size_text(exc)) is not None:
        return UrlFailure(Reject.TOO_LARGE, too_large)
    exc = _root(exc)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, HttpError):
        status = exc.response.status
        return UrlFailure(Reject.HTTP_ERROR, f"HTTP {status}", status)
    if isinstance(exc, RequestRefused):
        return UrlFailure(exc.reason, exc.detail)
    if isinstance(exc, IgnoreRequest):
        if "robots.txt" in text:
            return UrlFailure(Reject.ROBOTS_DISALLOWED, text)
        if "redirect" in text:
            return UrlFailure(Reject.REDIRECT_LOOP, text)
        return UrlFailure(Reject.NETWORK_ERROR, f"ignored: {text}")
    if isinstance(exc, DownloadTimeoutError | TxTimeoutError | TimeoutError):
        return UrlFailure(Reject.TIMEOUT, text)
    if isinstance(exc, DownloadCancelledError) and "max size" in text:
        return UrlFailure(Reject.TOO_LARGE, text)
    if (isinstance(exc, CancelledError | DownloadCancelledError) and received and max_size
            and received > max_size):
        return UrlFailure(Reject.TOO_LARGE,
                          f"received {received} bytes, over the download size cap {max_size}")
    if isinstance(exc, DownloadConnectionRefusedError | CannotResolveHostError
                  | DownloadFailedError | ResponseDataLossError | DownloadCancelledError):
        return UrlFailure(Reject.NETWORK_ERROR, f"{type(exc).__name__}: {text}")
    return UrlFailure(Reject.NETWORK_ERROR, f"{type(exc).__name__}: {text}")

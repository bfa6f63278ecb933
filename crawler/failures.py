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
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import TimeoutError as TxTimeoutError
from twisted.python.failure import Failure

from catalog.imaging import Reject


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


def classify(error: BaseException | Failure) -> UrlFailure:
    exc = error.value if isinstance(error, Failure) else error
    assert exc is not None
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
    if isinstance(exc, DownloadConnectionRefusedError | CannotResolveHostError
                  | DownloadFailedError | ResponseDataLossError | DownloadCancelledError):
        return UrlFailure(Reject.NETWORK_ERROR, f"{type(exc).__name__}: {text}")
    return UrlFailure(Reject.NETWORK_ERROR, f"{type(exc).__name__}: {text}")

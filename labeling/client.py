"""The Label Studio client, and the one place its failures become Shoal errors.

The SDK already retries connection errors and 5xx/429 answers with exponential backoff; `call`
adds the same for timeouts of requests that are safe to repeat, and turns what is left into
`LabelStudioUnavailable` (wait and retry later) or `LabelStudioError` (fix something first).

Every wait is bounded: a connection must open within ``CONNECT_TIMEOUT`` and each answer
start within ``READ_TIMEOUT``, and `call` tries a timed-out request again only while the
first try began less than ``CALL_BUDGET`` ago, so a frozen server (it accepts connections
and never answers) fails a call within about 40 s, not minutes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from label_studio_sdk.core.api_error import ApiError

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

T = TypeVar("T")


class LabelStudioUnavailable(RuntimeError):
    """Label Studio cannot be reached, or keeps failing or timing out."""


class LabelStudioError(RuntimeError):
    """Label Studio answered, but refused the request (bad token, missing project, bad data)."""


CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 20.0  # an import of a 500-task batch answers in a few seconds
CALL_BUDGET = 40.0


def make_client(url: str, token: str, *, timeout: float = READ_TIMEOUT,
                retries: int = 2) -> LabelStudio:
    """A client over ``url`` with ``token`` (legacy token or personal access token).

    ``timeout`` bounds each read and write; opening a connection (and waiting for one from
    the pool) is bounded by ``CONNECT_TIMEOUT``. ``retries`` are the SDK's, for connection
    errors and 5xx/429 answers."""
    if not url:
        raise LabelStudioError("no Label Studio URL: set SHOAL_LABEL_STUDIO_URL")
    if not token:
        raise LabelStudioError("no Label Studio token: set SHOAL_LABEL_STUDIO_TOKEN")
    from label_studio_sdk import LabelStudio  # a second to import: only when a client is made

    connect = min(CONNECT_TIMEOUT, timeout)
    limits = httpx.Timeout(timeout, connect=connect, pool=connect)
    # the SDK's own timeout is one float for everything; the client's own Timeout is used
    # when the SDK is given the client and no timeout
    return LabelStudio(base_url=url.rstrip("/"), api_key=token, max_retries=retries,
                       httpx_client=httpx.Client(timeout=limits, follow_redirects=True))


def base_url(client: LabelStudio) -> str:
    return client._client_wrapper.get_base_url()  # the SDK keeps it nowhere public


def call(client: LabelStudio, what: str, fn: Callable[..., T], *args: Any,
         idempotent: bool = True, attempts: int = 3, budget: float = CALL_BUDGET,
         **kwargs: Any) -> T:
    """Run one SDK call; retry timeouts of idempotent calls with backoff while within
    ``budget`` seconds of the first try; map failures."""
    started = time.monotonic()
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except httpx.TimeoutException as exc:
            waited = time.monotonic() - started
            if not idempotent or attempt == attempts - 1 or waited >= budget:
                raise LabelStudioUnavailable(
                    f"Label Studio at {base_url(client)} timed out while trying to {what} "
                    f"(no answer in {waited:.0f}s; is it overloaded or stopped?)"
                ) from exc
            time.sleep(backoff(attempt))
        except httpx.TransportError as exc:
            # the SDK has already retried connection errors with backoff
            raise LabelStudioUnavailable(
                f"Label Studio at {base_url(client)} is not reachable ({type(exc).__name__}: "
                f"{exc}) while trying to {what}; is it running? (scripts/labelstudio.sh status)"
            ) from exc
        except ApiError as exc:
            raise api_failure(client, what, exc) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def backoff(attempt: int, first: float = 1.0, cap: float = 30.0) -> float:
    return min(cap, first * 2**attempt) * (0.9 + 0.2 * random.random())


def api_failure(client: LabelStudio, what: str, exc: ApiError) -> RuntimeError:
    status = exc.status_code or 0
    detail = str(exc.body)[:300]
    where = base_url(client)
    if status in (401, 403):
        return LabelStudioError(
            f"Label Studio at {where} refused the token ({status}) while trying to {what}: "
            "check SHOAL_LABEL_STUDIO_TOKEN"
        )
    if status >= 500 or status in (408, 429):
        return LabelStudioUnavailable(
            f"Label Studio at {where} kept failing ({status}) while trying to {what}: {detail}"
        )
    return LabelStudioError(f"Label Studio at {where} answered {status} to {what}: {detail}")

"""Bodies go to the ingest workers in batches that form while the workers are busy.

A pool task per image cost the workers about 0.5 ms each in pickling, locks and wake-ups, and
the crawl's process as much again in its pool threads. ``Batcher`` keeps at most ``depth``
tasks in flight (one running and one queued per worker): when one is free an image goes at
once, alone; while all are taken, arriving images wait in a list that goes as one task (of at
most ``max_size``) when a task finishes. So a quiet crawl adds no delay, and a busy one sends
fewer, bigger tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ItemFailed:
    """What a batch function returns in place of a result for one item that raised."""

    error: str


class Batcher(Generic[T, R]):
    def __init__(self, pool: Executor, fn: Callable[[list[T]], Sequence[R | ItemFailed]], *,
                 depth: int, max_size: int = 16) -> None:
        self.pool, self.fn, self.depth, self.max_size = pool, fn, depth, max_size
        self.pending: list[tuple[T, asyncio.Future[R]]] = []
        self.in_flight = 0
        self.batches = 0

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        if self.in_flight < self.depth:
            self._send()
        return await future

    def _send(self) -> None:
        batch, self.pending = self.pending[: self.max_size], self.pending[self.max_size :]
        if not batch:
            return
        self.in_flight += 1
        self.batches += 1
        done = asyncio.wrap_future(self.pool.submit(self.fn, [item for item, _ in batch]))
        done.add_done_callback(lambda task: self._deliver(batch, task))

    def _deliver(self, batch: list[tuple[T, asyncio.Future[R]]],
                 task: asyncio.Future[Sequence[R | ItemFailed]]) -> None:
        self.in_flight -= 1
        if task.cancelled() or task.exception() is not None:
            error = task.exception() or asyncio.CancelledError("the batch was cancelled")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        else:
            for (_, future), result in zip(batch, task.result(), strict=True):
                if future.done():  # its item was cancelled meanwhile
                    continue
                if isinstance(result, ItemFailed):
                    future.set_exception(RuntimeError(result.error))
                else:
                    future.set_result(result)
        while self.pending and self.in_flight < self.depth:
            self._send()


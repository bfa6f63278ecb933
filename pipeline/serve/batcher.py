"""Requests that arrive together run through the model together.

Each request's images are decoded and transformed in the server's thread pool and put on one
queue; a single worker thread takes whatever has queued up (up to ``max_batch``) and runs the
model once on the stack. While the model works, the next batch gathers, so under load batches
grow by themselves and a lone request waits for nothing."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence

import torch

Forward = Callable[[Sequence[torch.Tensor]], torch.Tensor]
_Item = tuple[torch.Tensor, asyncio.AbstractEventLoop, asyncio.Future]


def _resolve(future: asyncio.Future, value: torch.Tensor | None,
             error: BaseException | None) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class MicroBatcher:
    def __init__(self, forward: Forward, max_batch: int = 32, name: str = "model") -> None:
        self.forward = forward
        self.max_batch = max_batch
        self.batches = 0  # how many forward passes ran, and on how many images
        self.images = 0
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    async def __call__(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The model's output row for each input, computed in whichever batches they land."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in tensors]
        for tensor, future in zip(tensors, futures, strict=True):
            self._queue.put((tensor, loop, future))
        return list(await asyncio.gather(*futures))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[_Item]) -> None:
        error: BaseException | None = None
        try:
            out = self.forward([tensor for tensor, _, _ in batch])
        except Exception as exc:  # handed to every waiting request, the worker lives on
            error, out = exc, None
        self.batches += 1
        self.images += len(batch)
        for i, (_, loop, future) in enumerate(batch):
            row = None if out is None else out[i]
            loop.call_soon_threadsafe(_resolve, future, row, error)

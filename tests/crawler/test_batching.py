"""The batcher that feeds the ingest workers: no delay when a worker is free, batches when not."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from crawler.batching import Batcher, ItemFailed


class GatedDouble:
    """Doubles numbers in batches; each batch waits for the test to open the gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()

    def __call__(self, items: list[int]) -> list[int | ItemFailed]:
        self.batches.append(items)
        assert self.gate.wait(10)
        return [ItemFailed(f"bad {n}") if n < 0 else 2 * n for n in items]


def test_images_wait_in_one_batch_only_while_every_slot_is_taken() -> None:
    async def scenario() -> tuple[list[int], list[list[int]], int]:
        fn = GatedDouble()
        with ThreadPoolExecutor(2) as pool:
            batcher: Batcher[int, int] = Batcher(pool, fn, depth=2)
            tasks = [asyncio.ensure_future(batcher.submit(n)) for n in range(7)]
            await asyncio.sleep(0.05)  # two went alone at once; five wait for a free slot
            assert fn.batches == [[0], [1]] and len(batcher.pending) == 5
            fn.gate.set()
            results = list(await asyncio.gather(*tasks))
        return results, fn.batches, batcher.batches

    results, batches, sent = asyncio.run(scenario())
    assert results == [0, 2, 4, 6, 8, 10, 12]
    assert batches[:3] == [[0], [1], [2, 3, 4, 5, 6]] and sent == 3


def test_one_failed_item_fails_alone_and_a_failed_batch_fails_all_of_it() -> None:
    def explode(items: list[int]) -> list[int]:
        raise OSError("worker died")

    async def scenario() -> None:
        fn = GatedDouble()
        fn.gate.set()
        with ThreadPoolExecutor(1) as pool:
            batcher: Batcher[int, int] = Batcher(pool, fn, depth=1)
            good, bad = await asyncio.gather(batcher.submit(3), batcher.submit(-1),
                                             return_exceptions=True)
            assert good == 6
            assert isinstance(bad, RuntimeError) and str(bad) == "bad -1"
            broken: Batcher[int, int] = Batcher(pool, explode, depth=1)
            with pytest.raises(OSError, match="worker died"):
                await broken.submit(1)
            assert broken.in_flight == 0

    asyncio.run(scenario())


def test_batches_are_capped_in_size() -> None:
    async def scenario() -> list[list[int]]:
        fn = GatedDouble()
        with ThreadPoolExecutor(1) as pool:
            batcher: Batcher[int, int] = Batcher(pool, fn, depth=1, max_size=3)
            tasks = [asyncio.ensure_future(batcher.submit(n)) for n in range(8)]
            await asyncio.sleep(0.05)
            fn.gate.set()
            await asyncio.gather(*tasks)
        return fn.batches

    batches = asyncio.run(scenario())
    assert all(len(b) <= 3 for b in batches) and sorted(sum(batches, [])) == list(range(8))

"""A multi-index hash table over 64-bit perceptual hashes: radius queries without a full scan.

The 64 bits are cut into a few chunks (see ``pipeline.dedupe.hashplan``). Each chunk has an
exact-match table (a counting-sort CSR: ``offsets[value] .. offsets[value + 1]`` into the
positions sorted by that chunk), and a lookup reads every chunk value within ``r_i`` flips of
its own, then checks the candidates with a popcount. Bulk joins (new hashes against the index,
all pairs) are vectorised with numpy, one flip mask (or a batch of them) per pass over many
queries.

Dedupe builds the index once per run over the catalog's hashes and joins the new ones against
it, so it has no incremental inserts and no single-hash query path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from pipeline.dedupe.hashplan import (
    Chunk,
    Plan,
    choose_plan,
    chunk_values,
    flip_masks,
    make_plan,
)

__all__ = ["HashIndex", "Plan", "brute_force_query", "choose_plan", "hex_to_u64", "make_plan",
           "popcount64", "u64_to_hex"]

_THREADS = max(1, min(4, os.cpu_count() or 1))  # bulk joins on large inputs
_THREAD_MIN = 50_000  # queries in a join before it is worth threads


def popcount64(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x)


def hex_to_u64(hexes: list[str] | np.ndarray) -> np.ndarray:
    """16-hex-digit strings (as stored in images.phash/dhash) to uint64, vectorised."""
    if len(hexes) == 0:
        return np.zeros(0, dtype=np.uint64)
    raw = bytes.fromhex("".join(hexes))
    if len(raw) != 8 * len(hexes):
        raise ValueError("every hash must be exactly 16 hex digits")
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


def u64_to_hex(value: int) -> str:
    return f"{int(value):016x}"


def _expand(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate the ranges ``starts[i] .. starts[i] + lengths[i]`` without a Python loop."""
    lengths = lengths.astype(np.int64, copy=False)
    starts = starts.astype(np.int64, copy=False)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.repeat(starts - ends + lengths, lengths) + np.arange(total, dtype=np.int64)


class _JoinTables:
    """Immutable exact-match tables over one set of hashes, for one plan, for bulk joins.

    Each looked-up chunk has its own slice of "slots": the hashes sorted by that chunk's value,
    with ``counts[value]`` hashes from slot ``offsets[value]`` on. Joins walk the queries in
    the same sorted order, so flipping a few bits of a chunk lands near the previous lookup and
    memory is read almost sequentially instead of at random.
    """

    def __init__(self, hashes: np.ndarray, plan: Plan) -> None:
        self.plan = plan
        self.hashes = hashes
        n = len(hashes)
        self.live = [c for c in plan.chunks if c.radius >= 0]
        offsets, counts, sorted_pos, self.bases = [], [], [], []
        # every table starts at a multiple of the widest one, so a key is (base | value) ^ mask
        stride = 1 << max((c.width for c in self.live), default=0)
        for i, c in enumerate(self.live):
            vals = chunk_values(hashes, c)
            cnt = np.bincount(vals, minlength=1 << c.width)
            offs = np.zeros(stride, dtype=np.int64)
            np.cumsum(cnt[:-1], out=offs[1 : len(cnt)])
            offsets.append(offs + i * n)
            counts.append(np.pad(cnt, (0, stride - len(cnt))))
            sorted_pos.append(np.argsort(vals, kind="stable"))
            self.bases.append(i * stride)
        self.offsets = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
        if len(self.live) * n < 2**31:
            self.offsets = self.offsets.astype(np.int32)
        all_counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        top = int(all_counts.max()) if len(all_counts) else 0
        small = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int64
        self.counts = all_counts.astype(small)  # a small table stays in cache
        self.sorted_pos = np.concatenate(sorted_pos) if sorted_pos else np.zeros(0, np.int64)
        self.sorted_hash = hashes[self.sorted_pos]

    def join(
        self, queries: np.ndarray, radius: int, *, self_join: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (query index, position, distance) within ``radius``; may repeat a pair.

        With ``self_join`` the queries are this table's own hashes and each unordered pair is
        reported once per chunk that finds it, as (smaller, larger) positions. The passes run
        on a few threads: numpy releases the GIL inside each large array operation.
        """
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if len(queries) and len(self.hashes):
            jobs = [job for ci, c in enumerate(self.live)
                    for job in self._chunk_jobs(ci, c, queries, radius, self_join)]
            workers = min(len(jobs), _THREADS) if len(queries) >= _THREAD_MIN else 1
            if workers > 1:
                with ThreadPoolExecutor(workers) as pool:
                    for part in pool.map(lambda job: job(), jobs):
                        out.extend(part)
            else:
                for job in jobs:
                    out.extend(job())
        if not out:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        qi, pos, dist = (np.concatenate(parts) for parts in zip(*out, strict=True))
        if self_join:
            qi, pos = np.minimum(qi, pos), np.maximum(qi, pos)
        return qi, pos, dist

    def _chunk_jobs(
        self, ci: int, c: Chunk, queries: np.ndarray, radius: int, self_join: bool
    ) -> list[Callable[[], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]]:
        """One job per group of flip masks sharing their highest bit."""
        n = len(self.hashes)
        lo = ci * n
        if self_join:  # the queries are the slots of this chunk, in sorted order
            q_order = self.sorted_pos[lo : lo + n]
            q_hash = self.sorted_hash[lo : lo + n]
        else:  # walked in chunk order too, so that the lookups read memory in order
            q_order = np.argsort(chunk_values(queries, c), kind="stable")
            q_hash = queries[q_order]
        q_vals = chunk_values(q_hash, c)
        base = self.bases[ci]
        counts = self.counts[base : base + (1 << c.width)]
        offsets = self.offsets[base : base + (1 << c.width)]
        by_top: dict[int, list[int]] = {}
        for mask in flip_masks(c.width, c.radius).tolist():
            by_top.setdefault(mask.bit_length() - 1, []).append(mask)

        def run(top: int, masks: list[int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            found = []
            subset = None
            vals = q_vals
            if self_join and top >= 0:
                # a pair differing by a mask shows up from both ends: keep only the end whose
                # chunk has the mask's top bit clear, which halves the work
                subset = np.flatnonzero(((q_vals >> top) & 1) == 0)
                vals = q_vals.take(subset)
            for mask in masks:
                keys = vals ^ mask
                lengths = counts.take(keys)
                hit = np.flatnonzero(lengths)
                if len(hit) == 0:
                    continue
                hit_len = lengths.take(hit)
                slots = _expand(offsets.take(keys.take(hit)), hit_len)
                qs = np.repeat(hit if subset is None else subset.take(hit), hit_len)
                if self_join and not mask:  # same bucket: each pair once, never with itself
                    later = slots - lo > qs
                    slots, qs = slots[later], qs[later]
                dist = popcount64(self.sorted_hash.take(slots) ^ q_hash.take(qs))
                keep = np.flatnonzero(dist <= radius)
                if len(keep):
                    found.append((q_order.take(qs.take(keep)),
                                  self.sorted_pos.take(slots.take(keep)),
                                  dist.take(keep).astype(np.int64)))
            return found

        return [partial(run, top, masks) for top, masks in by_top.items()]


def _unique_pairs(
    a: np.ndarray, b: np.ndarray, d: np.ndarray, n_b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    code = a.astype(np.int64) * max(n_b, 1) + b
    _, first = np.unique(code, return_index=True)
    return a[first], b[first], d[first]


class HashIndex:
    """Image ids keyed by 64-bit hash, answering "every id within Hamming distance r".

    ``radius`` is the largest radius the index answers; queries may ask for less. ``plan``
    fixes the chunking (the default picks the cheapest for the index's size).
    """

    def __init__(self, ids: np.ndarray, hashes: np.ndarray, radius: int = 8, *,
                 plan: Plan | None = None) -> None:
        if plan is not None and plan.radius < radius:
            raise ValueError("the plan must cover the index radius")
        self.radius = radius
        self._ids = np.asarray(ids, dtype=np.int64)
        self._hashes = np.asarray(hashes, dtype=np.uint64)
        if len(self._ids) != len(self._hashes):
            raise ValueError("ids and hashes differ in length")
        self._tables = _JoinTables(self._hashes, plan or choose_plan(radius, len(self._hashes)))

    @classmethod
    def build(
        cls, ids: np.ndarray, hashes: np.ndarray, radius: int = 8, *, plan: Plan | None = None
    ) -> HashIndex:
        return cls(ids, hashes, radius, plan=plan)

    @property
    def plan(self) -> Plan:
        return self._tables.plan

    def __len__(self) -> int:
        return len(self._ids)

    def _check_radius(self, radius: int | None) -> int:
        radius = self.radius if radius is None else radius
        if not 0 <= radius <= self.radius:
            raise ValueError(f"radius {radius} is outside 0..{self.radius} of this index")
        return radius

    def query_many(
        self, values: np.ndarray, radius: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (query index, id, distance) within ``radius``: one bulk join, no Python loop."""
        radius = self._check_radius(radius)
        values = np.asarray(values, dtype=np.uint64)
        qi, pos, dist = self._tables.join(values, radius)
        qi, pos, dist = _unique_pairs(qi, pos, dist, len(self._ids))
        ids = self._ids[pos]
        order = np.lexsort((ids, qi))
        return qi[order], ids[order], dist[order]

    def pairs(self, radius: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every unordered pair of entries within ``radius``: (id_a, id_b, distance).

        Entries are compared by position, so an id added twice pairs with itself at distance 0.
        """
        radius = self._check_radius(radius)
        a, b, d = self._tables.join(self._hashes, radius, self_join=True)
        a, b, d = _unique_pairs(a, b, d, len(self._ids))
        ida, idb = self._ids[a], self._ids[b]
        order = np.lexsort((idb, ida))
        return ida[order], idb[order], d[order]


def brute_force_query(hashes: np.ndarray, value: int, radius: int) -> np.ndarray:
    """Positions within ``radius`` by scanning every hash: the baseline the index is checked by."""
    return np.flatnonzero(popcount64(hashes ^ np.uint64(value)) <= radius)

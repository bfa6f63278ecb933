"""How 64-bit hashes are cut into chunks for multi-index lookups, and what a chunking costs.

Two hashes within Hamming distance R differ, by pigeonhole, in at most ``r_i`` bits of some
chunk ``i`` whenever ``sum(r_i + 1) >= R + 1``: a lookup enumerates every value within ``r_i``
flips of the query's own in each chunk, and checks the hashes found there.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

BITS = 64
MAX_CHUNK_BITS = 22  # direct-address tables: 2**22 offsets at most per chunk
MAX_RADIUS = 24


@dataclass(frozen=True)
class Chunk:
    shift: int
    width: int
    radius: int  # flips enumerated in this chunk; -1: the chunk is not looked up


@dataclass(frozen=True)
class Plan:
    radius: int
    chunks: tuple[Chunk, ...]

    @property
    def lookups(self) -> int:
        """Keys looked up per query."""
        return sum(ball_size(c.width, c.radius) for c in self.chunks)

    def candidates_per_query(self, n: int) -> float:
        """Expected table hits per query against ``n`` random hashes."""
        return sum(n * ball_size(c.width, c.radius) / 2**c.width for c in self.chunks)

    def describe(self) -> str:
        parts = [f"{c.width}b/r{c.radius}" for c in self.chunks if c.radius >= 0]
        return f"{len(self.chunks)} chunks (" + ", ".join(parts) + ")"


def ball_size(width: int, radius: int) -> int:
    return sum(comb(width, k) for k in range(radius + 1))


def make_plan(radius: int, n_chunks: int) -> Plan:
    """Split 64 bits into ``n_chunks`` near-equal chunks and share the pigeonhole budget."""
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius must be within 0..{MAX_RADIUS}, got {radius}")
    widths = [BITS // n_chunks + (1 if i < BITS % n_chunks else 0) for i in range(n_chunks)]
    if max(widths) > MAX_CHUNK_BITS:
        raise ValueError(f"{n_chunks} chunks are wider than {MAX_CHUNK_BITS} bits")
    budget = radius + 1  # sum of (r_i + 1) over the chunks must reach it
    shares = [budget // n_chunks + (1 if i < budget % n_chunks else 0) for i in range(n_chunks)]
    chunks, shift = [], 0
    for width, share in zip(widths, shares, strict=True):
        chunks.append(Chunk(shift=shift, width=width, radius=min(share - 1, width)))
        shift += width
    return Plan(radius=radius, chunks=tuple(chunks))


def choose_plan(radius: int, n: int) -> Plan:
    """The chunking with the least expected work per query for ``n`` hashes at ``radius``.

    Work is the keys looked up plus the candidates checked (weighted: each costs a gather, an
    xor and a popcount), so big tables favour few wide chunks and small ones many narrow ones.
    """
    return _cheapest_plan(radius, n, max_lookups=200_000, key_cost=1.0, candidate_cost=3.0)


def _cheapest_plan(radius: int, n: int, *, max_lookups: int, key_cost: float,
                   candidate_cost: float) -> Plan:
    """The chunking (3 to 32 chunks) of least ``key_cost * lookups + candidate_cost *
    candidates`` for ``n`` hashes, among those looking up at most ``max_lookups`` keys."""
    best: tuple[float, Plan] | None = None
    for n_chunks in range(3, BITS // 2 + 1):
        plan = make_plan(radius, n_chunks)
        if plan.lookups > max_lookups:
            continue
        cost = key_cost * plan.lookups + candidate_cost * plan.candidates_per_query(max(n, 1))
        if best is None or cost < best[0]:
            best = (cost, plan)
    assert best is not None
    return best[1]


def flip_masks(width: int, radius: int) -> np.ndarray:
    masks = [0]
    for k in range(1, radius + 1):
        for bits in combinations(range(width), k):
            masks.append(sum(1 << b for b in bits))
    return np.asarray(masks, dtype=np.int64)


def chunk_values(hashes: np.ndarray, c: Chunk) -> np.ndarray:
    return ((hashes >> np.uint64(c.shift)) & np.uint64((1 << c.width) - 1)).astype(np.int64)

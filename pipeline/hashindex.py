"""A multi-index hash table over 64-bit perceptual hashes: radius queries without a full scan.

The 64 bits are cut into a few chunks (3 of 21-22 bits for a million hashes at radius 8). Two
hashes within Hamming distance R differ, by pigeonhole, in at most ``r_i`` bits of some chunk
``i`` whenever ``sum(r_i + 1) >= R + 1``. Each chunk has an exact-match table (a counting-sort
CSR: ``offsets[value] .. offsets[value + 1]`` into the positions sorted by that chunk), and a
query looks up every chunk value within ``r_i`` flips of its own, then checks the few candidates
with a popcount. Everything is vectorised with numpy: one query is a handful of array
operations over a few hundred keys, and a bulk join runs the same lookups for many queries at
once, one flip mask (or a batch of them) per pass.

New hashes go to a small delta that is scanned directly; it is folded into the tables when it
grows, so inserts never rescan the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

BITS = 64
MAX_CHUNK_BITS = 22  # direct-address tables: 2**22 offsets at most per chunk
MAX_RADIUS = 24
_DELTA_SCAN_LIMIT = 20_000_000  # query x delta comparisons before a bulk query compacts first


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
    best: tuple[float, Plan] | None = None
    for n_chunks in range(3, BITS // 2 + 1):
        plan = make_plan(radius, n_chunks)
        if plan.lookups > 200_000:
            continue
        cost = plan.lookups + 3.0 * plan.candidates_per_query(max(n, 1))
        if best is None or cost < best[0]:
            best = (cost, plan)
    assert best is not None
    return best[1]


def _flip_masks(width: int, radius: int) -> np.ndarray:
    masks = [0]
    for k in range(1, radius + 1):
        for bits in combinations(range(width), k):
            masks.append(sum(1 << b for b in bits))
    return np.asarray(masks, dtype=np.int64)


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


class _Tables:
    """Immutable exact-match tables over one set of hashes, for one plan.

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
        base = 0
        for i, c in enumerate(self.live):
            vals = _chunk_values(hashes, c)
            cnt = np.bincount(vals, minlength=1 << c.width)
            offs = np.zeros(len(cnt), dtype=np.int64)
            np.cumsum(cnt[:-1], out=offs[1:])
            offsets.append(offs + i * n)
            counts.append(cnt)
            sorted_pos.append(np.argsort(vals, kind="stable"))
            self.bases.append(base)
            base += len(cnt)
        self.offsets = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
        if len(self.live) * n < 2**31:
            self.offsets = self.offsets.astype(np.int32)
        all_counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        top = int(all_counts.max()) if len(all_counts) else 0
        small = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int64
        self.counts = all_counts.astype(small)  # a small table stays in cache
        self.sorted_pos = np.concatenate(sorted_pos) if sorted_pos else np.zeros(0, np.int64)
        self.sorted_hash = hashes[self.sorted_pos]
        # one row per key a query looks up: which chunk, its table base, the flip mask
        chunk_of, base_of, mask_of = [], [], []
        for i, c in enumerate(self.live):
            masks = _flip_masks(c.width, c.radius)
            chunk_of.append(np.full(len(masks), i))
            base_of.append(np.full(len(masks), self.bases[i], dtype=np.int64))
            mask_of.append(masks)
        self.entry_chunk = np.concatenate(chunk_of) if chunk_of else np.zeros(0, np.int64)
        self.entry_base = np.concatenate(base_of) if base_of else np.zeros(0, np.int64)
        self.entry_mask = np.concatenate(mask_of) if mask_of else np.zeros(0, np.int64)
        # the same per key, as uint64 so that one query is four vector operations
        live_shift = np.asarray([c.shift for c in self.live], dtype=np.uint64)
        live_wmask = np.asarray([(1 << c.width) - 1 for c in self.live], dtype=np.uint64)
        self.entry_shift = live_shift[self.entry_chunk]
        self.entry_wmask = live_wmask[self.entry_chunk]
        self.entry_umask = self.entry_mask.astype(np.uint64)
        self.entry_ubase = self.entry_base.astype(np.uint64)

    def query_one(self, q: np.uint64, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions within ``radius`` of ``q`` and their distances (a few µs of numpy calls)."""
        keys = ((((q >> self.entry_shift) & self.entry_wmask) ^ self.entry_umask)
                + self.entry_ubase).view(np.int64)
        lengths = self.counts.take(keys)
        hit = np.flatnonzero(lengths)
        if len(hit) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        hit_len = lengths.take(hit)
        ends = np.cumsum(hit_len, dtype=np.int64)
        slots = np.repeat(self.offsets.take(keys.take(hit)) - ends + hit_len, hit_len)
        slots += np.arange(int(ends[-1]), dtype=np.int64)
        dist = popcount64(self.sorted_hash.take(slots) ^ q)
        keep = np.flatnonzero(dist <= radius)
        pos = self.sorted_pos.take(slots.take(keep))
        dist = dist.take(keep).astype(np.int64)
        if len(pos) > 1:  # a neighbour close in several chunks is found once per chunk
            pos, first = np.unique(pos, return_index=True)
            dist = dist[first]
        return pos, dist

    def join(
        self, queries: np.ndarray, radius: int, *, self_join: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (query index, position, distance) within ``radius``; may repeat a pair.

        With ``self_join`` the queries are this table's own hashes and each unordered pair is
        reported once per chunk that finds it, as (smaller, larger) positions.
        """
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if len(queries) and len(self.hashes):
            for ci, c in enumerate(self.live):
                out.extend(self._join_chunk(ci, c, queries, radius, self_join))
        if not out:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        qi, pos, dist = (np.concatenate(parts) for parts in zip(*out, strict=True))
        if self_join:
            qi, pos = np.minimum(qi, pos), np.maximum(qi, pos)
        return qi, pos, dist

    def _join_chunk(
        self, ci: int, c: Chunk, queries: np.ndarray, radius: int, self_join: bool
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        n = len(self.hashes)
        lo = ci * n
        if self_join:  # the queries are the slots of this chunk, in sorted order
            q_order = self.sorted_pos[lo : lo + n]
            q_hash = self.sorted_hash[lo : lo + n]
        else:
            q_order = np.argsort(_chunk_values(queries, c), kind="stable")
            q_hash = queries[q_order]
        q_vals = _chunk_values(q_hash, c)
        base = self.bases[ci]
        counts = self.counts[base : base + (1 << c.width)]
        offsets = self.offsets[base : base + (1 << c.width)]
        out = []
        for mask in _flip_masks(c.width, c.radius):
            keys = q_vals ^ mask
            lengths = counts.take(keys)
            hit = np.flatnonzero(lengths)
            if self_join and mask:
                # a pair differing by this mask shows up from both ends: keep the end whose
                # chunk has the mask's top bit clear
                top = int(mask).bit_length() - 1
                hit = hit[((q_vals[hit] >> top) & 1) == 0]
            if len(hit) == 0:
                continue
            hit_len = lengths[hit].astype(np.int64)
            slots = _expand(offsets.take(keys[hit]), hit_len)
            qs = np.repeat(hit, hit_len)
            if self_join and not mask:  # same bucket: each pair once, never with itself
                later = slots - lo > qs
                slots, qs = slots[later], qs[later]
            dist = popcount64(self.sorted_hash.take(slots) ^ q_hash.take(qs))
            keep = np.flatnonzero(dist <= radius)
            if len(keep):
                out.append((
                    q_order.take(qs[keep]),
                    self.sorted_pos.take(slots[keep]),
                    dist[keep].astype(np.int64),
                ))
        return out


def _chunk_values(hashes: np.ndarray, c: Chunk) -> np.ndarray:
    return ((hashes >> np.uint64(c.shift)) & np.uint64((1 << c.width) - 1)).astype(np.int64)


def _unique_pairs(
    a: np.ndarray, b: np.ndarray, d: np.ndarray, n_b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    code = a.astype(np.int64) * max(n_b, 1) + b
    _, first = np.unique(code, return_index=True)
    return a[first], b[first], d[first]


class HashIndex:
    """Image ids keyed by 64-bit hash, answering "every id within Hamming distance r".

    ``radius`` is the largest radius the index answers; queries may ask for less. ``plan``
    fixes the chunking (the default picks the cheapest for the current size at every rebuild).
    """

    def __init__(self, radius: int = 8, *, plan: Plan | None = None) -> None:
        if plan is not None and plan.radius < radius:
            raise ValueError("the plan must cover the index radius")
        self.radius = radius
        self._fixed_plan = plan
        self._ids = np.zeros(0, dtype=np.int64)
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._tables = _Tables(self._hashes, plan or choose_plan(radius, 0))
        self._delta_ids: list[np.ndarray] = []
        self._delta_hashes: list[np.ndarray] = []
        self._delta_n = 0

    @classmethod
    def build(
        cls, ids: np.ndarray, hashes: np.ndarray, radius: int = 8, *, plan: Plan | None = None
    ) -> HashIndex:
        index = cls(radius, plan=plan)
        index._ids = np.asarray(ids, dtype=np.int64)
        index._hashes = np.asarray(hashes, dtype=np.uint64)
        index._rebuild()
        return index

    @property
    def plan(self) -> Plan:
        return self._tables.plan

    def __len__(self) -> int:
        return len(self._ids) + self._delta_n

    def add(self, ids: np.ndarray | list[int], hashes: np.ndarray | list[int]) -> None:
        """Insert without rebuilding; the delta joins the tables once it is 1/8 of them."""
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        hashes = np.atleast_1d(np.asarray(hashes, dtype=np.uint64))
        if len(ids) != len(hashes):
            raise ValueError("ids and hashes differ in length")
        self._delta_ids.append(ids)
        self._delta_hashes.append(hashes)
        self._delta_n += len(ids)
        if self._delta_n > max(4096, len(self._ids) // 8):
            self.compact()

    def compact(self) -> None:
        """Fold the delta into the tables."""
        if not self._delta_n:
            return
        self._ids = np.concatenate([self._ids, *self._delta_ids])
        self._hashes = np.concatenate([self._hashes, *self._delta_hashes])
        self._delta_ids, self._delta_hashes, self._delta_n = [], [], 0
        self._rebuild()

    def _rebuild(self) -> None:
        plan = self._fixed_plan or choose_plan(self.radius, len(self._hashes))
        self._tables = _Tables(self._hashes, plan)

    def _delta(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._delta_n:
            return np.zeros(0, np.int64), np.zeros(0, np.uint64)
        if len(self._delta_ids) > 1:
            self._delta_ids = [np.concatenate(self._delta_ids)]
            self._delta_hashes = [np.concatenate(self._delta_hashes)]
        return self._delta_ids[0], self._delta_hashes[0]

    def _check_radius(self, radius: int | None) -> int:
        radius = self.radius if radius is None else radius
        if not 0 <= radius <= self.radius:
            raise ValueError(f"radius {radius} is outside 0..{self.radius} of this index")
        return radius

    def query(self, value: int, radius: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, distances) of every hash within ``radius`` of ``value``, ordered by id."""
        radius = self._check_radius(radius)
        q = np.uint64(value)
        pos, dists = self._tables.query_one(q, radius)
        ids = self._ids.take(pos)
        d_ids, d_hashes = self._delta()
        if len(d_ids):
            d_dist = popcount64(d_hashes ^ q).astype(np.int64)
            near = d_dist <= radius
            ids = np.concatenate([ids, d_ids[near]])
            dists = np.concatenate([dists, d_dist[near]])
        if len(ids) < 2:
            return ids, dists
        order = np.argsort(ids, kind="stable")
        return ids[order], dists[order]

    def query_many(
        self, values: np.ndarray, radius: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (query index, id, distance) within ``radius``: one bulk join, no Python loop."""
        radius = self._check_radius(radius)
        values = np.asarray(values, dtype=np.uint64)
        if len(values) * self._delta_n > _DELTA_SCAN_LIMIT:
            self.compact()
        qi, pos, dist = self._tables.join(values, radius)
        qi, pos, dist = _unique_pairs(qi, pos, dist, len(self._ids))
        ids = self._ids[pos]
        d_ids, d_hashes = self._delta()
        if len(d_ids) and len(values):
            d = popcount64(values[:, None] ^ d_hashes[None, :])
            dq, dp = np.nonzero(d <= radius)
            qi = np.concatenate([qi, dq])
            ids = np.concatenate([ids, d_ids[dp]])
            dist = np.concatenate([dist, d[dq, dp].astype(np.int64)])
        order = np.lexsort((ids, qi))
        return qi[order], ids[order], dist[order]

    def pairs(self, radius: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every unordered pair of entries within ``radius``: (id_a, id_b, distance).

        Entries are compared by position, so an id added twice pairs with itself at distance 0.
        """
        radius = self._check_radius(radius)
        self.compact()
        a, b, d = self._tables.join(self._hashes, radius, self_join=True)
        a, b, d = _unique_pairs(a, b, d, len(self._ids))
        ida, idb = self._ids[a], self._ids[b]
        order = np.lexsort((idb, ida))
        return ida[order], idb[order], d[order]


def brute_force_query(hashes: np.ndarray, value: int, radius: int) -> np.ndarray:
    """Positions within ``radius`` by scanning every hash: the baseline the index is checked by."""
    return np.flatnonzero(popcount64(hashes ^ np.uint64(value)) <= radius)

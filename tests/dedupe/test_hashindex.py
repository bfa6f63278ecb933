"""The multi-index hash table returns exactly what a full scan returns."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.dedupe import hashindex
from pipeline.dedupe.hashindex import (
    HashIndex,
    brute_force_query,
    choose_plan,
    hex_to_u64,
    make_plan,
)


def _planted(n: int, seed: int) -> np.ndarray:
    """Random hashes where a third are copies of others with 0..12 bits flipped."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    for dst in range(0, n, 3):
        src = int(rng.integers(0, n))
        bits = rng.choice(64, size=int(rng.integers(0, 13)), replace=False)
        hashes[dst] = hashes[src] ^ np.uint64(sum(1 << int(b) for b in bits))
    return hashes


def _query(index: HashIndex, value: int, radius: int | None = None):
    """(ids, distances) of one hash, through the bulk join."""
    _qi, ids, dists = index.query_many(np.array([value], dtype=np.uint64), radius)
    return ids, dists


def _brute_pairs(hashes: np.ndarray, ids: np.ndarray, radius: int) -> set[tuple[int, int]]:
    d = np.bitwise_count(hashes[:, None] ^ hashes[None, :])
    a, b = np.nonzero(np.triu(d <= radius, k=1))
    return set(zip(ids[a].tolist(), ids[b].tolist(), strict=True))


@pytest.mark.parametrize("radius", [0, 1, 4, 8, 12])
@pytest.mark.parametrize("n_chunks", [None, 3, 4, 9])
def test_pairs_and_queries_match_brute_force(radius, n_chunks):
    hashes = _planted(1000, seed=radius)
    ids = np.arange(len(hashes)) * 5 + 11
    plan = make_plan(radius, n_chunks) if n_chunks else None
    index = HashIndex.build(ids, hashes, radius, plan=plan)
    a, b, d = index.pairs()
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == _brute_pairs(hashes, ids, radius)
    assert np.all(d <= radius)
    for q in hashes[:40]:
        got, dist = _query(index, int(q))
        want = brute_force_query(hashes, int(q), radius)
        assert got.tolist() == sorted(ids[want].tolist())
        assert dist.tolist() == np.bitwise_count(hashes[want] ^ q)[np.argsort(ids[want])].tolist()
    qi, found, _ = index.query_many(hashes[:100])
    want = {(i, int(x)) for i in range(100)
            for x in ids[brute_force_query(hashes, int(hashes[i]), radius)]}
    assert set(zip(qi.tolist(), found.tolist(), strict=True)) == want


def test_query_exactly_at_radius_and_one_past():
    base = 0xDEADBEEF_01234567
    at = base ^ 0b1111_1111  # 8 bits within one chunk: the hardest place for pigeonhole
    past = base ^ 0b1_1111_1111
    index = HashIndex.build(np.array([1, 2]), np.array([at, past], dtype=np.uint64), 8)
    ids, dists = _query(index, base)
    assert ids.tolist() == [1] and dists.tolist() == [8]
    assert _query(index, base, radius=7)[0].tolist() == []


def test_empty_and_single():
    empty = HashIndex.build(np.zeros(0), np.zeros(0, np.uint64), 8)
    assert len(empty.pairs()[0]) == 0 and len(_query(empty, 5)[0]) == 0
    one = HashIndex.build(np.array([9]), np.array([5], np.uint64), 8)
    assert len(one.pairs()[0]) == 0 and _query(one, 5)[0].tolist() == [9]


def test_plan_scales_chunking_with_size():
    big = choose_plan(8, 1_000_000)
    assert sum(c.radius + 1 for c in big.chunks if c.radius >= 0) >= 9
    assert len(big.chunks) == 3  # 3 chunks of 21-22 bits with 2 flips each at a million
    assert choose_plan(8, 1000).lookups < big.lookups
    with pytest.raises(ValueError):
        _query(HashIndex.build(np.zeros(0), np.zeros(0, np.uint64), 8), 1, radius=9)


def test_hex_round_trip():
    assert hex_to_u64(["ffffffffffffffff", "0000000000000001"]).tolist() == [2**64 - 1, 1]
    with pytest.raises(ValueError):
        hex_to_u64(["abc"])


def test_threaded_join_finds_the_same_pairs(monkeypatch):
    hashes = _planted(3000, seed=3)
    ids = np.arange(len(hashes))
    single = HashIndex.build(ids, hashes, 8).pairs()
    monkeypatch.setattr(hashindex, "_THREAD_MIN", 0)
    monkeypatch.setattr(hashindex, "_THREADS", 3)
    threaded = HashIndex.build(ids, hashes, 8).pairs()
    assert all(np.array_equal(x, y) for x, y in zip(single, threaded, strict=True))
    assert set(zip(threaded[0].tolist(), threaded[1].tolist(), strict=True)) == _brute_pairs(
        hashes, ids, 8)


def test_single_queries_at_every_radius_match_brute_force():
    hashes = _planted(120_000, seed=7)
    ids = np.arange(len(hashes))
    index = HashIndex.build(ids, hashes, 8)
    rng = np.random.default_rng(3)
    queries = np.concatenate([hashes[rng.integers(0, len(hashes), 150)],
                              rng.integers(0, 2**63, 50, dtype=np.int64).astype(np.uint64)])
    for radius in (8, 5, 0):
        for q in queries:
            got, dist = _query(index, int(q), radius)
            want = brute_force_query(hashes, int(q), radius)
            assert got.tolist() == want.tolist()
            assert dist.tolist() == np.bitwise_count(hashes[want] ^ q).tolist()


def test_query_with_many_hits_returns_each_once():
    """Hundreds of hits, each found through every chunk."""
    base = np.uint64(0x0123456789ABCDEF)
    near = [base ^ np.uint64(1 << (i % 64)) for i in range(300)]
    hashes = np.array([base] * 500 + near, dtype=np.uint64)
    index = HashIndex.build(np.arange(len(hashes)), hashes, 8)
    got, dist = _query(index, int(base))
    assert got.tolist() == list(range(len(hashes)))
    assert dist.tolist() == [0] * 500 + [1] * 300

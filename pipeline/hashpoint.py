"""One radius query against a million hashes in microseconds: a compiled multi-index lookup.

A single query touches a couple of hundred buckets. As numpy calls its cost was the calls
themselves, and in any form its cost is waiting for memory: every bucket is a read at a random
place. So the lookup is one compiled loop (numba) that

- reads all bucket bounds first (independent loads, which the CPU overlaps),
- asks for the next buckets' cache lines while it scans the current one (software prefetch),
- scans 32-bit fingerprints (bits of the hash from outside the chunk that found it: a distance
  over any 32 bits is at most the full one) instead of the 64-bit hashes, half the bytes,
- and checks the full hash only for the few candidates that pass.

These tables are separate from the bulk join's: point queries want few keys (each a random
read), the join wants few candidates (it streams keys in order), so each gets its own chunking.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from pipeline.hashplan import BITS, Plan, chunk_values, flip_masks

_PREFETCH_AHEAD = 8  # buckets
_PREFETCH_SLOTS = 128  # fingerprints from a bucket's start (8 cache lines)
_FP_MASK = np.uint64(0xFFFFFFFF)


@intrinsic
def _popcount(typingctx, x):  # type: ignore[no-untyped-def]
    """The CPU's own popcount (LLVM ``ctpop``) on a uint64."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])
    return types.uint64(types.uint64), codegen


@intrinsic
def _prefetch(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    """Start loading ``arr[idx]`` into cache without waiting for it (LLVM ``prefetch``)."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        # a read, kept in all cache levels, data (not instructions)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(arr, idx), codegen


def fingerprints(hashes: np.ndarray, rot: int) -> np.ndarray:
    """The low 32 bits of each hash rotated right by ``rot``, as uint32."""
    if rot:
        hashes = (hashes >> np.uint64(rot)) | (hashes << np.uint64(BITS - rot))
    return (hashes & _FP_MASK).astype(np.uint32)


@njit(cache=True, nogil=True)
def _fingerprint_one(x, rot):  # type: ignore[no-untyped-def]
    if rot == 0:
        return np.uint32(x & _FP_MASK)
    return np.uint32(((x >> rot) | (x << (np.uint64(64) - rot))) & _FP_MASK)


@njit(cache=True, nogil=True)
def _query(q, radius, chunks, entries, offsets, sorted_fp, sorted_pos,
           hashes):  # type: ignore[no-untyped-def]
    """Every (position, distance) within ``radius`` of ``q``, each position once, ascending.

    ``chunks`` rows: table base, shift, width mask, fingerprint rotation (one column a chunk);
    ``entries`` rows: chunk, flip mask (one column a key looked up). Few arguments, because
    each one costs the call time to check.
    """
    n_chunks = chunks.shape[1]
    own = np.empty(n_chunks, np.uint64)
    q_fp = np.empty(n_chunks, np.uint32)
    for i in range(n_chunks):
        own[i] = chunks[0, i] | ((q >> chunks[1, i]) & chunks[2, i])
        q_fp[i] = _fingerprint_one(q, chunks[3, i])
    entry_chunk = entries[0]
    n_keys = entries.shape[1]
    starts = np.empty(n_keys, np.int64)
    ends = np.empty(n_keys, np.int64)
    for e in range(n_keys):
        key = np.int64(own[entry_chunk[e]] ^ entries[1, e])
        starts[e] = offsets[key]
        ends[e] = offsets[key + 1]
    # slots passing the fingerprint screen; few do, so a bucket is first only counted (a loop
    # the compiler vectorises) and read again only when something in it passed
    hits = np.empty(64, np.int64)
    m = 0
    for e in range(n_keys):
        ahead = e + _PREFETCH_AHEAD
        if ahead < n_keys:
            for s in range(starts[ahead], min(ends[ahead], starts[ahead] + _PREFETCH_SLOTS), 16):
                _prefetch(sorted_fp, s)
        f = q_fp[entry_chunk[e]]
        passed = 0
        for s in range(starts[e], ends[e]):
            passed += _popcount(np.uint64(sorted_fp[s] ^ f)) <= radius
        if passed == 0:
            continue
        if m + passed > len(hits):
            hits = np.concatenate((hits[:m], np.empty(m + passed + 64, np.int64)))
        for s in range(starts[e], ends[e]):
            if _popcount(np.uint64(sorted_fp[s] ^ f)) <= radius:
                hits[m] = s
                m += 1
    pos = np.empty(m, np.int64)
    dist = np.empty(m, np.int64)
    k = 0
    for j in range(m):
        p = sorted_pos[hits[j]]
        d = _popcount(hashes[p] ^ q)
        if d <= radius:
            pos[k] = p
            dist[k] = d
            k += 1
    # a neighbour is found once for every chunk where it is within that chunk's flips
    order = np.argsort(pos[:k])
    kept = 0
    for j in range(k):
        if kept == 0 or pos[order[j]] != pos[order[kept - 1]]:
            order[kept] = order[j]
            kept += 1
    return pos[order[:kept]], dist[order[:kept]]


class PointTables:
    """Immutable point-query tables over ``hashes`` for ``plan``."""

    def __init__(self, hashes: np.ndarray, plan: Plan) -> None:
        self.plan = plan
        self.hashes = hashes
        n = len(hashes)
        live = [c for c in plan.chunks if c.radius >= 0]
        # every chunk's table starts at a multiple of the widest one: a key is (base | value)
        stride = 1 << max(c.width for c in live)
        index_type = np.int32 if len(live) * n < 2**31 else np.int64
        offsets = np.empty(len(live) * stride + 1, dtype=index_type)
        sorted_pos, sorted_fp = [], []
        for i, c in enumerate(live):
            vals = chunk_values(hashes, c)
            order = np.argsort(vals, kind="stable")
            # bucket v is offsets[v] .. offsets[v + 1]; values past this chunk's: empty
            starts = np.searchsorted(vals[order], np.arange(stride), side="left")
            offsets[i * stride : (i + 1) * stride] = starts + i * n
            sorted_pos.append(order.astype(index_type))
            sorted_fp.append(fingerprints(hashes[order], (c.shift + c.width) % BITS))
        offsets[-1] = len(live) * n
        self.offsets = offsets
        self.sorted_pos = np.concatenate(sorted_pos)
        self.sorted_fp = np.concatenate(sorted_fp)
        self.chunks = np.array([[i * stride, c.shift, (1 << c.width) - 1,
                                 (c.shift + c.width) % BITS] for i, c in enumerate(live)],
                               dtype=np.uint64).T.copy()
        # one column per key a query looks up: which chunk, which flip mask
        masks = [flip_masks(c.width, c.radius) for c in live]
        self.entries = np.stack([
            np.concatenate([np.full(len(m), i) for i, m in enumerate(masks)]),
            np.concatenate(masks)]).astype(np.uint64)

    def query(self, q: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions within ``radius`` of ``q`` (ascending) and their distances."""
        if not len(self.hashes):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return _query(np.uint64(q), radius, self.chunks, self.entries, self.offsets,
                      self.sorted_fp, self.sorted_pos, self.hashes)

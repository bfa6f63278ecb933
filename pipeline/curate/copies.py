"""Copies pHash misses (mirror images, crops): near neighbours in a backbone's mirror-invariant
feature space (``trainer.embed.Embedding.mirror_invariant``), through a faiss index.

An exact inner-product index up to ``EXACT_UP_TO`` images; above it an HNSW graph, which answers
in about log(n) per query, so the search scales past a million images. Found pairs join the
catalog's duplicate groups through dedupe's own group machinery (``link_pairs``).
"""

from __future__ import annotations

import faiss
import numpy as np

# cosine similarity of mirror-invariant Lite0 features above which two images are copies;
# measured with benchmarks/curate.py on web-20 (docs/curate.md)
DEFAULT_THRESHOLD = 0.92
NEIGHBOURS = 8
EXACT_UP_TO = 200_000


def build_index(vectors: np.ndarray) -> faiss.Index:
    dim = vectors.shape[1]
    if len(vectors) <= EXACT_UP_TO:
        index: faiss.Index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 64
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def neighbours(vectors: np.ndarray, k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's ``k`` nearest others: (similarities, positions), [n, k], -1 where fewer."""
    n = len(vectors)
    if n < 2:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    index = build_index(vectors)
    sims, pos = index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, n - 1) + 1)
    out_s = np.full((n, sims.shape[1] - 1), -1.0, np.float32)
    out_p = np.full((n, sims.shape[1] - 1), -1, np.int64)
    for i in range(n):  # drop the vector itself (it may tie with an exact copy)
        keep = [j for j in range(sims.shape[1]) if pos[i, j] != i][:out_s.shape[1]]
        out_s[i, :len(keep)], out_p[i, :len(keep)] = sims[i, keep], pos[i, keep]
    return out_s, out_p


def copy_pairs(sims: np.ndarray, pos: np.ndarray, threshold: float = DEFAULT_THRESHOLD
               ) -> list[tuple[int, int, float]]:
    """Position pairs (a < b) whose similarity reaches ``threshold``, with it."""
    best: dict[tuple[int, int], float] = {}
    for i, j in zip(*np.nonzero(sims >= threshold), strict=True):
        b = int(pos[i, j])
        if b < 0:
            continue
        pair = (min(int(i), b), max(int(i), b))
        best[pair] = max(best.get(pair, -1.0), float(sims[i, j]))
    return sorted((a, b, s) for (a, b), s in best.items())

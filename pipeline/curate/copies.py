"""Copies pHash misses (mirror images, crops): near neighbours in a backbone's mirror-invariant
feature space (``trainer.embed.Embedding.mirror_invariant``), through a faiss index, then
verified pixel by pixel (``pipeline.curate.verify``).

An exact inner-product index up to ``EXACT_UP_TO`` images; above it an HNSW graph, which answers
in about log(n) per query, so the search scales past a million images. A neighbour at cosine
similarity ``DEFAULT_THRESHOLD`` or more is only a candidate: two photos of one species in one
pose come as close as a 10% crop does, so the features cannot tell them apart and a threshold
alone cannot reach both recall and precision. Each candidate pair is compared by keypoints and
aligned pixels; the pairs that are one picture join the catalog's duplicate groups through
dedupe's own group machinery (``link_pairs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from pipeline.curate.verify import Agreement, Verifier

# cosine similarity of mirror-invariant Lite0 features from which a neighbour is a candidate
# copy: under the lowest 10% crop of the benchmark's held-out seed 1 (0.81), with a margin;
# the verification, not this threshold, keeps precision (docs/curate.md)
DEFAULT_THRESHOLD = 0.75
# each image's nearest neighbour is checked from this similarity on: the features of a small
# picture drift (a 10% crop of a 150 x 56 px photo sat at 0.70 to its source) while its most
# alike neighbour is still the copy; one more check per image at most
NEAREST_FLOOR = 0.6
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


def copy_pairs(sims: np.ndarray, pos: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
               nearest: float = NEAREST_FLOOR) -> list[tuple[int, int, float]]:
    """Candidate position pairs (a < b), with their similarity: every neighbour at
    ``threshold`` or more, and each image's nearest neighbour at ``nearest`` or more."""
    best: dict[tuple[int, int], float] = {}
    take = sims >= threshold
    if sims.shape[1]:
        take[:, 0] |= sims[:, 0] >= nearest
    for i, j in zip(*np.nonzero(take), strict=True):
        b = int(pos[i, j])
        if b < 0:
            continue
        pair = (min(int(i), b), max(int(i), b))
        best[pair] = max(best.get(pair, -1.0), float(sims[i, j]))
    return sorted((a, b, s) for (a, b), s in best.items())


@dataclass(frozen=True)
class CopyPair:
    a: int  # positions
    b: int
    similarity: float
    agreement: Agreement


def verified_pairs(candidates: Sequence[tuple[int, int, float]], paths: Sequence[Path],
                   max_pixels: int) -> tuple[list[CopyPair], int]:
    """The candidates that are one picture, and how many were compared."""
    verifier = Verifier(paths, max_pixels)
    found = []
    for a, b, sim in candidates:
        agreement = verifier.compare(a, b)
        if agreement.same_picture:
            found.append(CopyPair(a, b, sim, agreement))
    return found, len(candidates)

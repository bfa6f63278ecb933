"""Not a fish: the k-th neighbour's distance, so two alike pictures that are no fish (a scanned
page and a page of text) do not vouch for each other."""

from __future__ import annotations

import numpy as np

from pipeline.curate.copies import neighbours
from pipeline.curate.outliers import K, outliers


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def pool_with_a_pair_of_strangers(seed: int = 0) -> np.ndarray:
    """60 vectors around a few species centres, then two that are close to each other and far
    from all of them."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(4, 32)) + 3.0)  # the species share a direction: fish
    fish = unit(centres[rng.integers(0, 4, 60)] + 0.15 * rng.normal(size=(60, 32)))
    stranger = unit(rng.normal(size=(1, 32)) - 3.0)
    pair = unit(stranger + 0.03 * rng.normal(size=(2, 32)))
    return np.vstack([fish, pair]).astype(np.float32)


def test_a_pair_of_alike_strangers_is_flagged_with_the_head_seeing_no_fish():
    x = pool_with_a_pair_of_strangers()
    sims, _ = neighbours(x, K)
    fish = np.full(len(x), 0.5)
    fish[-2:] = 0.001  # the ImageNet head sees no fish in the two
    odd = outliers(sims, fish)
    assert odd.flagged[-2:].all()
    assert not odd.flagged[:-2].any()
    # the one close neighbour each has does not make them near the pool
    assert (sims[-2:, 0] > 0.9).all() and (odd.z[-2:] > 5).all()


def test_far_enough_out_is_flagged_whatever_the_head_sees_and_the_pool_never():
    x = pool_with_a_pair_of_strangers()
    sims, _ = neighbours(x, K)
    fish = np.full(len(x), 0.5)  # the head sees fish in every picture
    odd = outliers(sims, fish)
    assert odd.flagged[-2:].all() and (odd.z[-2:] >= 6).all()
    assert not odd.flagged[:-2].any()


def test_a_pool_smaller_than_k_uses_its_farthest_neighbour():
    sims = np.array([[0.9, 0.8, -1.0], [0.5, 0.4, 0.3], [-1.0, -1.0, -1.0]], np.float32)
    odd = outliers(sims, np.zeros(3), k=3)
    np.testing.assert_allclose(odd.distance, [0.2, 0.7, 0.0], atol=1e-6)

"""Not a fish: an image far from the pool in the backbone's feature space, or one the
backbone's own ImageNet classifier does not take for a fish while its neighbours are far.

Two scores per image, both from features already cached:
- ``distance``: 1 - the mean cosine similarity to its ``K`` nearest other pool images (faiss),
  measured against the pool's own spread: ``z`` is (distance - median) / (1.4826 * MAD), a
  robust z-score, so the threshold adapts to how varied the pool is;
- ``fish``: the probability mass of ImageNet's fish classes under the backbone's ImageNet
  head (``trainer.embed.imagenet_fish_probability``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

K = 10
# chosen with benchmarks/curate.py on web-20 with skimage's photographs mixed in (docs/curate.md)
Z_ALONE = 6.0  # this far out is no fish whatever the ImageNet head says
Z_WITH_HEAD = 2.5  # this far out and the ImageNet head sees no fish either
FISH_LOW = 0.05


@dataclass
class OutlierScores:
    distance: np.ndarray  # [n]
    z: np.ndarray  # [n]
    fish: np.ndarray  # [n]
    flagged: np.ndarray  # [n] bool

    def score(self) -> np.ndarray:
        """[n] in [0, 1): how sure the pass is that the image is no fish."""
        return np.clip(1 - np.exp(-np.maximum(self.z, 0) / Z_WITH_HEAD), 0, 1) * (
            1 - np.minimum(self.fish, 1) / 2)


def robust_z(values: np.ndarray) -> np.ndarray:
    median = np.median(values)
    mad = np.median(np.abs(values - median)) * 1.4826
    return (values - median) / max(mad, 1e-6)


def outliers(sims: np.ndarray, fish: np.ndarray, k: int = K) -> OutlierScores:
    """``sims``: [n, >=k] similarities to the nearest other images, most similar first."""
    near = sims[:, :k]
    valid = near > -1
    mean = np.where(valid, near, 0).sum(1) / np.maximum(valid.sum(1), 1)
    distance = 1 - mean
    z = robust_z(distance) if len(distance) else distance
    flagged = (z >= Z_ALONE) | ((z >= Z_WITH_HEAD) & (fish < FISH_LOW))
    return OutlierScores(distance, z, fish, flagged)

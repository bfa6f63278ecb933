"""A second opinion on a candidate copy: are the two pictures the same pixels, moved?

Backbone features put two photos of one species close together (same pose, same white
background, the same fish shot twice on a ruler), so a feature match is only a candidate. A
copy (a crop, a mirror image, a resize, a re-encode, a watermark or a letterbox added) keeps
every point of the picture where it was, up to one similarity transform (scale, shift): SIFT
keypoints (OpenCV) of one image match those of the other under that transform to within a
fraction of a pixel, all over the picture. A second shot of the same scene agrees only roughly
(the fish moved, the camera moved: residuals of one to two pixels), and two different photos
that share a logo or a watermark agree only inside that strip. The mirror image of the first
picture is tried too, so flipped copies verify.

The test, on the pictures fitted into ``SIDE`` x ``SIDE``: RANSAC inliers of one similarity
transform (at ``REPROJECTION`` px), spread over at least ``MIN_COVER`` of the region where
either picture has keypoints, and then either
- at least ``MIN_INLIERS`` of them, and the pixels, aligned by that transform, correlate at
  least ``SAME_PIXELS``, or
- at least ``OVERLAID_INLIERS``, agreeing to a median residual of ``MAX_RESIDUAL`` px (of the
  smaller picture), and the pixels still correlate ``OVERLAID``: a copy under a watermark, a
  caption or a new background, whose keypoints sit where they were (SIFT localises to a few
  tenths of a pixel) while a second shot's scatter by a pixel or more.
Two different photos under one tiled watermark agree exactly, but only on the watermark: their
pixels do not correlate. The thresholds were set on the benchmark's other seed (1) and on
web-20 photo pairs judged by eye, never on the scored seed (docs/curate.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from catalog.imaging import ImageRejected, decode_rgb

SIDE = 512  # keypoints are found on the picture scaled to fit SIDE x SIDE
KEYPOINTS = 1000
RATIO = 0.8  # Lowe's ratio test on the two nearest descriptors
REPROJECTION = 4.0  # pixels (at SIDE) a RANSAC inlier may lie off the transform
MIN_COVER = 0.3
MIN_INLIERS = 20  # with aligned pixels correlated SAME_PIXELS: the same picture
SAME_PIXELS = 0.9
OVERLAID_INLIERS = 40  # with keypoints MAX_RESIDUAL exact (px) and pixels OVERLAID correlated:
MAX_RESIDUAL = 0.5  # the same picture under a watermark, a caption or a new background
OVERLAID = 0.5
SEED = 0  # RANSAC draws from OpenCV's generator: seeded before each fit, so reruns agree
KEEP = 2048  # pictures whose keypoints stay in memory (about 0.8 MB each), least recent out


@dataclass(frozen=True)
class Keypoints:
    points: np.ndarray  # [n, 2] float32, in pixels of the fitted picture
    descriptors: np.ndarray | None  # [n, 128] float32
    grey: np.ndarray  # [h, w] uint8: the fitted picture


@dataclass(frozen=True)
class Agreement:
    inliers: int
    correlation: float  # of the pixels of the two pictures, aligned, where both are
    residual: float  # median inlier residual, in pixels of the smaller picture
    cover: float  # the smaller share of either picture's keypoint region the inliers span
    scale: float  # size of the second picture over the first
    mirrored: bool  # the first picture's mirror image matched

    @property
    def same_picture(self) -> bool:
        if self.inliers < MIN_INLIERS or self.cover < MIN_COVER:
            return False
        return self.correlation >= SAME_PIXELS or (
            self.inliers >= OVERLAID_INLIERS and self.residual <= MAX_RESIDUAL
            and self.correlation >= OVERLAID)

    def as_dict(self) -> dict[str, float | int | bool]:
        return {"inliers": self.inliers, "correlation": round(self.correlation, 3),
                "residual": round(self.residual, 3),
                "cover": round(self.cover, 3), "scale": round(self.scale, 3),
                "mirrored": self.mirrored}


NONE = Agreement(0, 0.0, float("inf"), 0.0, 1.0, False)


def fitted_grey(path: Path, max_pixels: int) -> PILImage.Image:
    """The picture in grey, scaled (down or up) so its long side is ``SIDE``: a thumbnail and
    its source are compared at one scale, and a 150 px thumbnail still shows enough keypoints
    for the count to mean what it means on a photo."""
    img = decode_rgb(path, max_pixels).convert("L")
    w, h = img.size
    scale = SIDE / max(w, h, 1)
    if scale != 1:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                         PILImage.Resampling.BICUBIC if scale > 1 else PILImage.Resampling.LANCZOS)
    return img


def keypoints(img: PILImage.Image) -> Keypoints:
    found, desc = cv2.SIFT_create(nfeatures=KEYPOINTS).detectAndCompute(np.asarray(img), None)
    points = np.array([k.pt for k in found], dtype=np.float32).reshape(-1, 2)
    return Keypoints(points, desc, np.asarray(img))


def _area(points: np.ndarray) -> float:
    if not len(points):
        return 0.0
    span = points.max(0) - points.min(0)
    return float(span[0] * span[1])


def _cover(inliers: np.ndarray, every: np.ndarray) -> float:
    """The share of the box around all of a picture's keypoints (where there is anything to
    see: a fish on a white background has none on the background) that the inliers' box
    covers."""
    return _area(inliers) / max(_area(every), 1.0)


def agree(a: Keypoints, b: Keypoints, mirrored: bool = False) -> Agreement:
    """How well ``a``'s keypoints map onto ``b``'s under one similarity transform."""
    if a.descriptors is None or b.descriptors is None or len(a.points) < 2 \
            or len(b.points) < 2:
        return NONE
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < 3:
        return NONE
    pa = a.points[[g.queryIdx for g in good]]
    pb = b.points[[g.trainIdx for g in good]]
    cv2.setRNGSeed(SEED)
    matrix, mask = cv2.estimateAffinePartial2D(pa, pb, method=cv2.RANSAC,
                                               ransacReprojThreshold=REPROJECTION)
    if matrix is None or mask is None or not mask.any():
        return NONE
    keep = mask.ravel().astype(bool)
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    moved = pa[keep] @ matrix[:, :2].T + matrix[:, 2]
    # residuals are in b's pixels; b is `scale` times a, so divide by the larger of 1, scale
    residual = float(np.median(np.linalg.norm(moved - pb[keep], axis=1))) / max(scale, 1.0)
    cover = min(_cover(pa[keep], a.points), _cover(pb[keep], b.points))
    return Agreement(int(keep.sum()), correlation(a.grey, b.grey, matrix), residual, cover,
                     scale, mirrored)


def correlation(a: np.ndarray, b: np.ndarray, matrix: np.ndarray) -> float:
    """Pearson correlation of ``a``'s pixels with ``b``'s mapped back onto them by
    ``matrix`` (a to b), over the pixels both pictures cover, lightly blurred so a re-encode
    or resize does not count."""
    h, w = a.shape
    back = cv2.warpAffine(b.astype(np.float32), matrix, (w, h),
                          flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(b.shape, np.uint8), matrix, (w, h),
                            flags=cv2.WARP_INVERSE_MAP | cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((5, 5), np.uint8)).astype(bool)
    if inside.sum() < 100:
        return 0.0
    x = cv2.GaussianBlur(a.astype(np.float32), (0, 0), 1.5)[inside]
    y = cv2.GaussianBlur(back, (0, 0), 1.5)[inside]
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-9))


class Verifier:
    """Keypoints of each picture found once (and of its mirror image) while it is among the
    ``KEEP`` most recently used, then any pair of them compared. An unreadable picture agrees
    with nothing."""

    def __init__(self, paths: Sequence[Path], max_pixels: int, keep: int = KEEP) -> None:
        self.paths, self.max_pixels, self.keep = list(paths), max_pixels, keep
        self._found: OrderedDict[tuple[int, bool], Keypoints | None] = OrderedDict()

    def _points(self, i: int, mirrored: bool) -> Keypoints | None:
        key = (i, mirrored)
        if key in self._found:
            self._found.move_to_end(key)
            return self._found[key]
        try:
            img = fitted_grey(self.paths[i], self.max_pixels)
        except (ImageRejected, OSError):
            found = None
        else:
            found = keypoints(ImageOps.mirror(img) if mirrored else img)
        self._found[key] = found
        if len(self._found) > self.keep:
            self._found.popitem(last=False)
        return found

    def compare(self, i: int, j: int) -> Agreement:
        """Picture ``i`` against ``j``, then (unless that already agrees) ``i``'s mirror image
        against ``j``: the better of the two."""
        a, b = self._points(i, False), self._points(j, False)
        if a is None or b is None:
            return NONE
        plain = agree(a, b)
        if plain.same_picture:
            return plain
        mirror = self._points(i, True)
        flipped = agree(mirror, b, True) if mirror is not None else NONE
        return max(plain, flipped, key=lambda g: (g.same_picture, g.inliers))

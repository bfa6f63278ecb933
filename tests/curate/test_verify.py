"""The second opinion on a feature match, on real web-20 photos: a crop or a mirror image of a
photo is the same picture; a second shot of the same fish, or another photo under the same
tiled watermark, is not."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageDraw, ImageOps

from pipeline.curate.copies import copy_pairs, verified_pairs
from pipeline.curate.verify import Verifier

MAX_PIXELS = 50_000_000


def web20(fishdata: Path, name: str) -> Path:
    return fishdata / "web-20" / name


def crop_of(src: Path, out: Path, share: float = 0.9, seed: int = 0) -> Path:
    img = PILImage.open(src).convert("RGB")
    w, h = img.size
    cw, ch = round(w * share), round(h * share)
    rng = random.Random(seed)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img.crop((x, y, x + cw, y + ch)).save(out, quality=92)
    return out


@pytest.mark.parametrize("name", ["Hilsa/000005.jpg", "Koi/000030.jpg", "Shing/000003.jpg"])
def test_a_ten_percent_crop_and_a_mirror_image_are_the_same_picture(fishdata, tmp_path, name):
    src = web20(fishdata, name)
    crop = crop_of(src, tmp_path / "crop.jpg")
    mirror = tmp_path / "mirror.jpg"
    ImageOps.mirror(PILImage.open(src).convert("RGB")).save(mirror, quality=92)
    verifier = Verifier([src, crop, mirror], MAX_PIXELS)
    cropped = verifier.compare(0, 1)
    assert cropped.same_picture and not cropped.mirrored, cropped
    assert 0.85 < cropped.scale < 1.2  # both fitted into the same box
    flipped = verifier.compare(2, 0)
    assert flipped.same_picture and flipped.mirrored, flipped


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_crop_of_a_thumbnail_is_the_same_picture(fishdata, tmp_path, seed):
    """A 100 px wide picture shows a dozen keypoints at its own size; scaled up to the common
    size the check finds enough of them (web-20 itself holds a 150 x 56 px photo)."""
    thumb = PILImage.open(web20(fishdata, "Kachki/000058.jpg")).convert("RGB")
    thumb.thumbnail((100, 100))
    small = tmp_path / "thumb.jpg"
    thumb.save(small, quality=92)
    crop = crop_of(small, tmp_path / "crop.jpg", seed=seed)
    agreement = Verifier([crop, small], MAX_PIXELS).compare(0, 1)
    assert agreement.same_picture, agreement


def test_a_copy_under_a_caption_is_the_same_picture(fishdata, tmp_path):
    src = web20(fishdata, "Rui/000022.jpg")
    img = PILImage.open(src).convert("RGB")
    draw = ImageDraw.Draw(img)
    w, h = img.size
    draw.rectangle((0, h - h // 8, w, h), fill=(20, 20, 20))
    draw.text((10, h - h // 10), "shop.example  fresh fish daily", fill=(255, 255, 255))
    captioned = tmp_path / "captioned.jpg"
    img.save(captioned, quality=80)
    assert Verifier([src, captioned], MAX_PIXELS).compare(0, 1).same_picture


@pytest.mark.parametrize("a, b", [
    ("Mrigal/000007.jpg", "Mrigal/000019.jpg"),  # one fish shot twice, another ruler
    ("Bata/000006.jpg", "Bata/000035.jpg"),  # one fish shot twice, another ruler
    ("Hilsa/000023.jpg", "Hilsa/000047.jpg"),  # one market stall, two stock photos
    ("Rui/000038.jpg", "Rui/000057.jpg"),  # one fish, two poses
    ("Koi/000006.jpg", "Koi/000035.jpg"),  # two photos under one tiled watermark
    ("Pabda/000034.jpg", "Pabda/000035.jpg"),  # two photos sharing a logo
])
def test_two_different_photos_of_one_species_are_not(fishdata, a, b):
    verifier = Verifier([web20(fishdata, a), web20(fishdata, b)], MAX_PIXELS)
    assert not verifier.compare(0, 1).same_picture
    assert not verifier.compare(1, 0).same_picture


def test_verified_pairs_keeps_only_the_copies_and_an_unreadable_file_agrees_with_nothing(
        fishdata, tmp_path):
    src = web20(fishdata, "Hilsa/000005.jpg")
    crop = crop_of(src, tmp_path / "crop.jpg", seed=3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(src.read_bytes()[:200])
    paths = [src, crop, web20(fishdata, "Mrigal/000007.jpg"),
             web20(fishdata, "Mrigal/000019.jpg"), broken]
    found, compared = verified_pairs([(0, 1, 0.9), (2, 3, 0.87), (0, 4, 0.8)], paths,
                                     MAX_PIXELS)
    assert compared == 3
    assert [(p.a, p.b) for p in found] == [(0, 1)]
    assert found[0].agreement.as_dict()["inliers"] >= 40


def test_candidates_are_the_close_neighbours_and_each_image_s_nearest_above_the_floor():
    sims = np.array([[0.80, 0.70], [0.80, 0.50], [0.65, 0.55], [0.40, 0.30]], np.float32)
    pos = np.array([[1, 2], [0, 3], [0, 1], [1, 2]])
    pairs = copy_pairs(sims, pos, threshold=0.75, nearest=0.6)
    # 0-1 close; 2's nearest (0) above the floor; 0-2 at 0.70 is only 0's second neighbour,
    # 3's nearest is under the floor
    assert [(a, b) for a, b, _ in pairs] == [(0, 1), (0, 2)]
    assert dict(((a, b), s) for a, b, s in pairs)[(0, 2)] == pytest.approx(0.65)

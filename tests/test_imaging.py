import io

import imagehash
import pytest
from PIL import Image, JpegImagePlugin

from catalog.imaging import (
    ImageRejected,
    Limits,
    Reject,
    capped_size,
    hash_stored,
    normalise,
    sniff_format,
)
from pipeline.demo.site.hostile import exif_rotated_jpeg, hostile_files


@pytest.mark.parametrize("name", [n for n, (_, r) in hostile_files().items() if r])
def test_hostile_file_is_rejected_with_its_reason(name):
    raw, reason = hostile_files()[name]
    with pytest.raises(ImageRejected) as info:
        normalise(raw)
    assert info.value.reason == reason


@pytest.mark.parametrize("name", ["cmyk.jpg", "alpha.png", "exif-rotated.jpg"])
def test_repairable_file_becomes_rgb_jpeg(name):
    norm = normalise(hostile_files()[name][0])
    img = Image.open(io.BytesIO(norm.data))
    assert img.format == "JPEG" and img.mode == "RGB"


def test_exif_orientation_is_applied():
    norm = normalise(exif_rotated_jpeg())
    assert (norm.width, norm.height) == (200, 400)
    assert (norm.source_width, norm.source_height) == (400, 200)


def test_alpha_is_composited_on_white():
    img = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    out = io.BytesIO()
    img.save(out, "PNG")
    norm = normalise(out.getvalue())
    r, g, b = Image.open(io.BytesIO(norm.data)).getpixel((32, 32))
    assert min(r, g, b) > 240


def test_long_side_is_capped_and_hashes_match_imagehash(fishdata):
    photo = max((fishdata / "web-20" / "Hilsa").iterdir(), key=lambda p: p.stat().st_size)
    norm = normalise(photo.read_bytes(), Limits(max_long_side=512))
    assert max(norm.width, norm.height) == 512
    stored = Image.open(io.BytesIO(norm.data))
    # recomputable from the store, and close to imagehash on a full decode of the stored file
    assert (norm.phash, norm.dhash) == hash_stored(norm.data)
    assert imagehash.hex_to_hash(norm.phash) - imagehash.phash(stored) <= 4
    assert imagehash.hex_to_hash(norm.dhash) - imagehash.dhash(stored) <= 6
    assert len(norm.phash) == 16 and len(norm.dhash) == 16


def test_normalise_is_deterministic():
    raw = exif_rotated_jpeg()
    assert normalise(raw).sha256 == normalise(raw).sha256


def test_limits_are_configurable():
    raw = exif_rotated_jpeg()
    with pytest.raises(ImageRejected) as info:
        normalise(raw, Limits(min_side=300))
    assert info.value.reason == Reject.TOO_SMALL
    with pytest.raises(ImageRejected) as info:
        normalise(raw, Limits(max_pixels=1000))
    assert info.value.reason == Reject.TOO_MANY_PIXELS
    with pytest.raises(ImageRejected) as info:
        normalise(raw, Limits(max_bytes=10))
    assert info.value.reason == Reject.TOO_LARGE


def test_sniff_format():
    assert sniff_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff_format(b"<html>") is None


def test_real_photos_normalise(fishdata):
    photos = sorted((fishdata / "web-20" / "Hilsa").iterdir())[:5]
    for photo in photos:
        norm = normalise(photo.read_bytes())
        assert max(norm.width, norm.height) <= 1024


def test_a_wide_jpeg_is_decoded_at_reduced_scale_by_its_long_side(monkeypatch):
    """3000x1000 capped at 1024 may decode at 1/2 scale (1500x500 still covers 1024x341);
    a square draft request would have kept the full size because of the short side."""
    buf = io.BytesIO()
    Image.new("RGB", (3000, 1000), (20, 90, 160)).save(buf, "JPEG")
    decoded: list[tuple[int, int]] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, size):  # type: ignore[no-untyped-def]
        result = draft(self, mode, size)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    norm = normalise(buf.getvalue())
    assert decoded[0] == (1500, 500)
    assert (norm.width, norm.height) == (1024, 341)
    assert capped_size(3000, 1000, 1024) == (1024, 341)
    assert capped_size(600, 900, 1024) == (600, 900)

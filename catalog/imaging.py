"""Validate, normalise and hash one image: the single path every image enters the catalog by.

Order matters for safety: magic bytes are sniffed before Pillow sees the data, the pixel count
is checked from the header before anything is decoded (decompression bombs), and only then is
the image decoded, at reduced scale where the format allows it.

Every decode in the product opens its image through :func:`open_image`, which applies the
configured pixel limit before any pixel is decoded. Pillow's own process-wide guard
(``Image.MAX_IMAGE_PIXELS``) is left as Pillow sets it: a second, outer bound, whose error is
reported with the same reason.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import imagehash
from PIL import Image, ImageOps, UnidentifiedImageError


class Reject:
    """Reasons an image (or its URL) is refused. Stored as ``images.reject_reason``."""

    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TRUNCATED = "truncated"
    INVALID_IMAGE = "invalid_image"
    TOO_SMALL = "too_small"
    EXTREME_ASPECT = "extreme_aspect"  # its short side would be stored below min_side
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_LARGE = "too_large"
    ANIMATED = "animated"
    EMPTY = "empty"
    # URL-level reasons, recorded on image_sources.error by the crawler
    HTTP_ERROR = "http_error"
    ROBOTS_DISALLOWED = "robots_disallowed"
    NETWORK_ERROR = "network_error"
    REDIRECT_LOOP = "redirect_loop"
    TIMEOUT = "timeout"
    OFFSITE = "offsite"  # a host that is not one of the source's
    PRIVATE_ADDRESS = "private_address"  # resolves to loopback, private, link-local, ...
    UNSUPPORTED_URL = "unsupported_url"  # not http(s), or no usable host or port


# Refusals that depend on the configured limits, not on the bytes alone: a file refused for one
# of these is judged again when it is met again, since the limits may have changed since.
LIMIT_REASONS = frozenset({Reject.TOO_SMALL, Reject.EXTREME_ASPECT, Reject.TOO_MANY_PIXELS,
                           Reject.TOO_LARGE})


class ImageRejected(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    min_side: int = 32
    max_pixels: int = 60_000_000
    max_bytes: int = 30 * 1024 * 1024
    max_long_side: int = 1024
    jpeg_quality: int = 90


@dataclass(frozen=True)
class NormalisedImage:
    data: bytes  # the re-encoded JPEG that is stored
    sha256: str  # of ``data``
    raw_sha256: str  # of the bytes as found
    pixel_sha256: str  # of the decoded RGB pixels after normalisation
    phash: str  # 64-bit hex
    dhash: str
    width: int
    height: int
    source_width: int
    source_height: int
    source_format: str


_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"WEBP", 8, "WEBP"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
]


def sniff_format(head: bytes) -> str | None:
    """The image format named by the magic bytes, or None."""
    for magic, offset, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if name == "WEBP" and head[:4] != b"RIFF":
                continue
            return name
    return None


def _describe_non_image(head: bytes) -> tuple[str, str]:
    text = head[:256].lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in head[:1024].lower()):
        return Reject.UNSUPPORTED_FORMAT, "SVG vector image"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return Reject.NOT_AN_IMAGE, "HTML document"
    return Reject.NOT_AN_IMAGE, "unrecognised content"


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode == "CMYK":
        # Adobe-style JPEGs store inverted CMYK; Pillow's conversion handles both conventions
        return img.convert("RGB")
    return img.convert("RGB")


ImageInput = bytes | Path | str | BinaryIO


def open_image(source: ImageInput, max_pixels: int) -> Image.Image:
    """The image with only its header read, refused before any decode when it holds more than
    ``max_pixels`` pixels (or Pillow's own bomb guard trips). Raises :class:`ImageRejected`."""
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        with warnings.catch_warnings():
            # Pillow warns about big images and malformed metadata; the limit below decides
            warnings.simplefilter("ignore")
            img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageRejected(Reject.TOO_MANY_PIXELS, str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(Reject.INVALID_IMAGE, str(exc)) from exc
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ImageRejected(Reject.TOO_MANY_PIXELS, f"{width}x{height} > {max_pixels} pixels")
    return img


def _decode_failure(exc: BaseException) -> ImageRejected:
    if isinstance(exc, Image.DecompressionBombError):
        return ImageRejected(Reject.TOO_MANY_PIXELS, str(exc))
    msg = str(exc)
    reason = Reject.TRUNCATED if "truncat" in msg.lower() else Reject.INVALID_IMAGE
    return ImageRejected(reason, msg)


def load_image(img: Image.Image) -> Image.Image:
    """Decode an image from :func:`open_image`; a decode error becomes :class:`ImageRejected`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _decode_failure(exc) from exc
    return img


def decode_rgb(source: ImageInput, max_pixels: int) -> Image.Image:
    """The whole image decoded as RGB, after the pixel limit (the trainer's and predict's
    reader). Raises :class:`ImageRejected`."""
    with open_image(source, max_pixels) as img:
        return load_image(img).convert("RGB")


def _verify(raw: bytes, max_pixels: int) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            open_image(raw, max_pixels).verify()
    except (OSError, SyntaxError, ValueError) as exc:
        raise _decode_failure(exc) from exc


HASH_DECODE_SIDE = 64  # pHash looks at 32x32, dHash at 9x8: at least 64 px of input is plenty


def hash_image(img: Image.Image) -> tuple[str, str]:
    """(pHash, dHash) of an image as 16-hex-digit strings."""
    return str(imagehash.phash(img)), str(imagehash.dhash(img))


def hash_stored(data: bytes, max_pixels: int | None = None) -> tuple[str, str]:
    """(pHash, dHash) of a stored JPEG, recomputable from the store alone.

    The JPEG is decoded in greyscale at a reduced DCT scale (draft mode), which is several
    times cheaper than a full decode followed by the big resize imagehash would do.
    """
    img = open_image(data, Limits.max_pixels if max_pixels is None else max_pixels)
    img.draft("L", (HASH_DECODE_SIDE, HASH_DECODE_SIDE))
    return hash_image(img.convert("L"))


def capped_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The size with the long side capped, aspect kept. Draft mode needs this, not a square:
    it keeps *both* sides at least as big as asked, so a square cap would stop a landscape
    photo's decode from scaling down by its short side."""
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def normalise(raw: bytes, limits: Limits | None = None) -> NormalisedImage:
    """Check and re-encode ``raw``. Raises :class:`ImageRejected` with a reason when refused."""
    limits = limits or Limits()
    if not raw:
        raise ImageRejected(Reject.EMPTY, "no bytes")
    if len(raw) > limits.max_bytes:
        raise ImageRejected(Reject.TOO_LARGE, f"{len(raw)} bytes > {limits.max_bytes}")
    fmt = sniff_format(raw[:32])
    if fmt is None:
        raise ImageRejected(*_describe_non_image(raw[:1024]))

    img = open_image(raw, limits.max_pixels)
    src_w, src_h = img.size
    if getattr(img, "n_frames", 1) > 1:
        raise ImageRejected(Reject.ANIMATED, f"{img.n_frames} frames")
    _verify(raw, limits.max_pixels)
    if min(src_w, src_h) < limits.min_side:
        raise ImageRejected(Reject.TOO_SMALL, f"{src_w}x{src_h} < {limits.min_side} px")
    stored_w, stored_h = capped_size(src_w, src_h, limits.max_long_side)
    if min(stored_w, stored_h) < limits.min_side:
        raise ImageRejected(
            Reject.EXTREME_ASPECT, f"{src_w}x{src_h} would be stored as {stored_w}x{stored_h}, "
            f"short side < {limits.min_side} px")

    img = open_image(raw, limits.max_pixels)
    if fmt == "JPEG" and img.mode in ("RGB", "L", "CMYK"):
        # decode at 1/2, 1/4 or 1/8 scale straight from the DCT: big photos load much faster
        img.draft(img.mode, (stored_w, stored_h))
    load_image(img)
    ImageOps.exif_transpose(img, in_place=True)
    rgb = _to_rgb(img)
    if max(rgb.size) > limits.max_long_side:
        # an area average (BOX: each output pixel the mean of the input it covers): as good
        # as bilinear when shrinking and half its cost, 13 -> 7 ms for a 1600 px photo
        # (which draft mode cannot shrink by a power of two); training crops to 224 px
        rgb.thumbnail((limits.max_long_side, limits.max_long_side), Image.Resampling.BOX)
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=limits.jpeg_quality)
    data = out.getvalue()
    phash, dhash = hash_stored(data, limits.max_pixels)
    return NormalisedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        pixel_sha256=hashlib.sha256(rgb.tobytes()).hexdigest(),
        phash=phash,
        dhash=dhash,
        width=rgb.width,
        height=rgb.height,
        source_width=src_w,
        source_height=src_h,
        source_format=fmt,
    )

"""Uploaded photos to RGB images, with the catalog's limits applied before anything is decoded:
the byte count while reading, the magic bytes, then the pixel count from the header; only then
the decode, at reduced scale for JPEGs (so a bomb or a huge file costs a header read)."""

from __future__ import annotations

import warnings

from fastapi import UploadFile
from PIL import Image, ImageOps

from catalog.imaging import (
    ImageRejected,
    Limits,
    Reject,
    _to_rgb,  # the stored images' RGB rule (alpha on white): the model learnt on those
    capped_size,
    open_image,
    sniff_format,
)
from pipeline.serve.errors import ApiError

# the HTTP status of each reason an upload is refused
STATUS = {
    Reject.TOO_LARGE: 413,
    Reject.TOO_MANY_PIXELS: 413,
    Reject.NOT_AN_IMAGE: 415,
    Reject.UNSUPPORTED_FORMAT: 415,
}
ACCEPTED_TYPES = ("image/", "application/octet-stream")
# big JPEGs decode at 1/2, 1/4 or 1/8 scale down to this long side, still over 4x the model's
# input; photos under it decode exactly as `shoal predict` decodes them
DECODE_LONG_SIDE = 1024


def rejected(name: str, exc: ImageRejected) -> ApiError:
    return ApiError(STATUS.get(exc.reason, 422), exc.reason, f"{name}: {exc}")


async def read_upload(upload: UploadFile, limits: Limits) -> bytes:
    """The upload's bytes, refused as soon as it passes ``limits.max_bytes``."""
    name = upload.filename or "upload"
    declared = (upload.content_type or "").lower()
    if declared and not declared.startswith(ACCEPTED_TYPES):
        raise ApiError(415, "wrong_content_type",
                       f"{name}: sent as {declared}; send an image (image/jpeg, image/png, ...)")
    raw = await upload.read(limits.max_bytes + 1)
    if len(raw) > limits.max_bytes:
        raise ApiError(413, Reject.TOO_LARGE, f"{name}: larger than {limits.max_bytes} bytes")
    return raw


def decode(raw: bytes, limits: Limits, name: str = "upload") -> Image.Image:
    """An RGB image from checked bytes; raises ApiError (4xx) with the reason it was refused."""
    try:
        return _decode(raw, limits)
    except ImageRejected as exc:
        raise rejected(name, exc) from exc


def _decode(raw: bytes, limits: Limits) -> Image.Image:
    if not raw:
        raise ImageRejected(Reject.EMPTY, "no bytes")
    fmt = sniff_format(raw[:32])
    if fmt is None:
        text = raw[:256].lstrip().lower()
        if text.startswith((b"<svg", b"<?xml")):
            raise ImageRejected(Reject.UNSUPPORTED_FORMAT, "SVG vector image")
        raise ImageRejected(Reject.NOT_AN_IMAGE, "unrecognised content")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = open_image(raw, limits.max_pixels)  # the pixel limit, before any decode
            width, height = img.size
            if getattr(img, "n_frames", 1) > 1:
                raise ImageRejected(Reject.ANIMATED, f"{img.n_frames} frames")
            if min(width, height) < limits.min_side:
                raise ImageRejected(Reject.TOO_SMALL, f"{width}x{height} < {limits.min_side} px")
            if fmt == "JPEG" and img.mode in ("RGB", "L", "CMYK"):
                img.draft(img.mode, capped_size(width, height, DECODE_LONG_SIDE))
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        message = str(exc)
        reason = Reject.TRUNCATED if "truncat" in message.lower() else Reject.INVALID_IMAGE
        raise ImageRejected(reason, message) from exc

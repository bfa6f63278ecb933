"""Files that look like images and are not, or are images that must be refused or repaired.

Each entry maps a file name to (bytes, the reason Shoal must record, or None when the file is
a valid image that must be repaired and stored). Shared by the import tests and the test site.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

from PIL import Image

from catalog.imaging import Reject


def _jpeg(img: Image.Image, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90, **kw)
    return out.getvalue()


def _gradient(w: int = 320, h: int = 240, mode: str = "RGB") -> Image.Image:
    img = Image.linear_gradient("L").resize((w, h))
    if mode == "RGB":
        return Image.merge("RGB", (img, img.rotate(90, expand=False), img.transpose(0)))
    return img.convert(mode)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 30000) -> bytes:
    """A real greyscale PNG of side x side black pixels: ~1 MB on disk, 900 MP decoded."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    chunks = [comp.compress(row) for _ in range(side)]
    idat = b"".join(chunks) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def exif_rotated_jpeg() -> bytes:
    """A 400x200 JPEG whose EXIF orientation (6) says: show it rotated, as 200x400."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _jpeg(_gradient(400, 200), exif=exif.tobytes())


@lru_cache(maxsize=1)
def hostile_files() -> dict[str, tuple[bytes, str | None]]:
    good = _jpeg(_gradient())
    gif = io.BytesIO()
    Image.new("P", (1, 1)).save(gif, "GIF")
    anim = io.BytesIO()
    frames = [Image.new("RGB", (64, 64), (80 * i, 255 - 80 * i, 40)) for i in range(3)]
    frames[0].save(anim, "GIF", save_all=True, append_images=frames[1:])
    cmyk = _jpeg(_gradient(mode="RGB").convert("CMYK"))
    rgba = io.BytesIO()
    im = _gradient().convert("RGBA")
    im.putalpha(Image.linear_gradient("L").resize(im.size))
    im.save(rgba, "PNG")
    return {
        "page-as-image.jpg": (b"<!DOCTYPE html><html><body>Not found</body></html>",
                              Reject.NOT_AN_IMAGE),
        "truncated.jpg": (good[: len(good) // 2], Reject.TRUNCATED),
        "tracking-pixel.gif": (gif.getvalue(), Reject.TOO_SMALL),
        "vector.svg": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" '
                       b'width="100" height="100"><circle r="40" cx="50" cy="50"/></svg>',
                       Reject.UNSUPPORTED_FORMAT),
        "bomb.png": (png_bomb(), Reject.TOO_MANY_PIXELS),
        "animated.gif": (anim.getvalue(), Reject.ANIMATED),
        "empty.jpg": (b"", Reject.EMPTY),
        "cmyk.jpg": (cmyk, None),
        "alpha.png": (rgba.getvalue(), None),
        "exif-rotated.jpg": (exif_rotated_jpeg(), None),
    }

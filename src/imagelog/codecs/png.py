"""PNG through libpng (imagecodecs) at a fast level; 8 and 16 bit; the record in an iTXt chunk."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import imagecodecs
import numpy as np

from .base import Codec, Pixels

_KEYWORD = b"imagelog"


def itxt_chunk(keyword: bytes, text: str) -> bytes:
    """An uncompressed PNG iTXt chunk."""
    body = b"iTXt" + keyword + b"\x00\x00\x00\x00\x00" + text.encode("utf-8")
    return struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))


def insert_after_ihdr(png: bytes, chunk: bytes) -> bytes:
    """Insert a chunk right after IHDR (signature 8 bytes + IHDR 25 bytes)."""
    (ihdr_len,) = struct.unpack(">I", png[8:12])
    at = 8 + 12 + ihdr_len
    return b"".join((png[:at], chunk, png[at:]))


def find_itxt(png: bytes, keyword: bytes) -> str | None:
    """Return the text of the first iTXt chunk with ``keyword`` (uncompressed), or None."""
    pos = 8
    while pos + 12 <= len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT" or kind == b"IEND":
            return None
        if kind == b"iTXt":
            body = png[pos + 8 : pos + 8 + length]
            key, _, rest = body.partition(b"\x00")
            if key == keyword and rest[:1] == b"\x00":
                # compression flag, method, language\0, translated keyword\0, text
                parts = rest[2:].split(b"\x00", 2)
                if len(parts) == 3:
                    return parts[2].decode("utf-8", "replace")
        pos += 12 + length
    return None


class PNG(Codec):
    """PNG, lossless, 8/16 bit gray, RGB, RGBA; bool masks as 1-bit (RGB(A) masks as 0/255)."""

    name = "png"
    extension = "png"
    mime_type = "image/png"
    lossless = True
    dtypes = frozenset({"uint8", "uint16", "bool"})
    defaults = {"level": 1}
    library = "libpng"

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode; bool masks go through Pillow as 1-bit PNG, bool RGB(A) as 8-bit 0/255."""
        if pixels.dtype == np.bool_ and pixels.ndim == 3:  # PNG's 1-bit depth is gray-only
            return bytes(imagecodecs.png_encode(pixels.view(np.uint8) * 255, level=params["level"]))
        if pixels.dtype == np.bool_:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG", compress_level=params["level"])
            return buf.getvalue()
        return bytes(imagecodecs.png_encode(pixels, level=params["level"]))

    def decode(self, data: bytes) -> Pixels:
        """Decode (1-bit PNG back to bool)."""
        if data[24:26] == b"\x01\x00":  # IHDR bit depth 1, colour type 0: our bool masks
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:  # via "L": Pillow's "1" arrays hold 0xff
                return np.asarray(im.convert("L")) > 0
        return np.asarray(imagecodecs.png_decode(data))

    def embed(self, data: bytes, record_json: str) -> bytes:
        """Insert an iTXt chunk ``imagelog`` after IHDR."""
        return insert_after_ihdr(data, itxt_chunk(_KEYWORD, record_json))

    def extract(self, data: bytes) -> str | None:
        """Read the ``imagelog`` iTXt chunk."""
        return find_itxt(data, _KEYWORD)

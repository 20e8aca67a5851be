"""Already-encoded images (camera JPEGs, PNG/WebP/JPEG XL bytes), stored byte for byte."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import Codec, Pixels

_EXT = {"jpeg": ("jpg", "image/jpeg"), "png": ("png", "image/png"),
        "webp": ("webp", "image/webp"), "jxl": ("jxl", "image/jxl")}  # fmt: skip


def extension_of(fmt: str) -> tuple[str, str]:
    """File extension and MIME type of an encoded format name."""
    return _EXT[fmt]


def encoded_lossless(data: bytes, fmt: str) -> bool:
    """Whether already-encoded bytes hold their image losslessly, as far as the format says.

    JPEG never does; WebP does when its image is a ``VP8L`` (lossless) bitstream, not ``VP8``;
    PNG always does. JPEG XL does not say so in a header cheaply, so its bytes count as
    lossless (docs/record.md says so).

    >>> import imagecodecs, numpy as np
    >>> rgb = np.zeros((8, 8, 3), np.uint8)
    >>> [encoded_lossless(bytes(imagecodecs.webp_encode(rgb, lossless=k)), "webp") for k in (True, False)]
    [True, False]
    """
    if fmt == "jpeg":
        return False
    if fmt == "webp":
        pos = 12  # RIFF size WEBP, then chunks: fourcc, little-endian size, data padded to even
        while pos + 8 <= len(data):
            fourcc = data[pos : pos + 4]
            if fourcc in (b"VP8 ", b"VP8L"):
                return fourcc == b"VP8L"
            size = int.from_bytes(data[pos + 4 : pos + 8], "little")
            pos += 8 + size + (size & 1)
        return False
    return True


def decode_any(data: bytes) -> Pixels:
    """Decode bytes of any format imagelog writes, choosing the decoder by magic bytes."""
    from ..frames import sniff_format

    fmt = sniff_format(data)
    if fmt == "jxl":
        import imagecodecs

        return np.asarray(imagecodecs.jpegxl_decode(data))
    if fmt == "png":  # libpng: 16-bit RGB(A) exactly, palettes as their colours, 1-bit as bool
        from .png import PNG

        return PNG().decode(data)
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode == "1":
            return np.asarray(im.convert("L")) > 0  # Pillow's "1" arrays hold 0xff for True
        return np.asarray(im)


class Passthrough(Codec):
    """Bytes that are already an image: never re-encoded, the record goes to a sidecar."""

    name = "passthrough"
    extension = ""
    mime_type = ""
    lossless = True
    dtypes = frozenset({"uint8", "uint16"})

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Never called: passthrough frames carry their bytes."""
        raise TypeError("passthrough stores encoded bytes; it does not encode pixels")

    def decode(self, data: bytes) -> Pixels:
        """Decode whatever format the bytes are."""
        return decode_any(data)

    @property
    def version(self) -> str:
        """Nothing encoded them here."""
        return ""

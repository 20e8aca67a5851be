"""TIFF through libtiff (imagecodecs): 16-bit and float32 with deflate and a predictor."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import imagecodecs
import numpy as np

from ..record import ascii_json
from .base import Codec, Pixels

_PREFIX = "imagelog:"


def layout(pixels: Pixels) -> dict[str, Any]:
    """``tiff_encode`` arguments that make ``HxW`` or ``HxWxC`` one page of C samples a pixel.

    Left to guess, libtiff's wrapper writes HxWxC as H pages of WxC unless C is 3 or 4 and the
    dtype 8 or 16 bit (a float32 RGB frame, a gray + alpha one).
    """
    channels = 1 if pixels.ndim == 2 else int(pixels.shape[2])
    if channels == 1:
        return {"photometric": "minisblack"}
    if channels in (3, 4):
        return {"photometric": "rgb"}
    extra = "unassalpha" if channels == 2 else "unspecified"
    return {"photometric": "minisblack", "planarconfig": "contig", "extrasample": extra}


class TIFF(Codec):
    """TIFF, lossless; the record in the ImageDescription tag."""

    name = "tiff"
    extension = "tif"
    mime_type = "image/tiff"
    lossless = True
    dtypes = frozenset({"uint8", "uint16", "float32"})
    defaults = {"compression": "deflate", "level": 1, "predictor": True}
    library = "libtiff"

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode without a record."""
        return self._encode(pixels, params, None)

    def encode_with_record(
        self, pixels: Pixels, params: Mapping[str, Any], record_json: str
    ) -> tuple[bytes, bool]:
        """Encode with the record in the ImageDescription tag (an ASCII tag: non-ASCII text
        goes in as ``\\u`` escapes, which JSON decodes to the same record)."""
        return self._encode(pixels, params, _PREFIX + ascii_json(record_json)), True

    def _encode(self, pixels: Pixels, params: Mapping[str, Any], description: str | None) -> bytes:
        return bytes(
            imagecodecs.tiff_encode(
                pixels,
                **layout(pixels),
                compression=params["compression"],
                level=params["level"],
                predictor=params["predictor"],
                description=description,
            )
        )

    def decode(self, data: bytes) -> Pixels:
        """Decode."""
        return np.asarray(imagecodecs.tiff_decode(data))

    def extract(self, data: bytes) -> str | None:
        """Read the record from ImageDescription (of the first page)."""
        desc = _description(data)
        if desc is not None and desc.startswith(_PREFIX):
            return desc[len(_PREFIX) :]
        return None


def _description(data: bytes) -> str | None:
    """The first page's ImageDescription (tag 270), read from the IFD itself: image libraries
    refuse some pages imagelog writes (float32 RGB), and the tag is all that is needed."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 16:
        return None
    version = struct.unpack(order + "H", data[2:4])[0]
    if version == 42:  # classic TIFF
        head, count_fmt, entry_fmt, entry_len = "I", "H", "HHII", 12
        (ifd,) = struct.unpack(order + head, data[4:8])
    elif version == 43:  # BigTIFF
        head, count_fmt, entry_fmt, entry_len = "Q", "Q", "HHQQ", 20
        (ifd,) = struct.unpack(order + head, data[8:16])
    else:
        return None
    count_len = struct.calcsize(count_fmt)
    if ifd + count_len > len(data):
        return None
    (n,) = struct.unpack_from(order + count_fmt, data, ifd)
    inline = 4 if version == 42 else 8  # value bytes held in the entry itself
    for i in range(n):
        at = ifd + count_len + i * entry_len
        if at + entry_len > len(data):
            return None
        tag, kind, count, value = struct.unpack_from(order + entry_fmt, data, at)
        if tag != 270:
            continue
        if kind != 2:  # ASCII
            return None
        start = at + entry_len - inline if count <= inline else value
        raw = data[start : start + count]
        return raw.split(b"\0", 1)[0].decode("ascii", "replace")
    return None

"""JPEG through libjpeg-turbo (imagecodecs); 8-bit gray and RGB; the record as XMP in APP1."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import imagecodecs
import numpy as np

from .base import Codec, Pixels, xmp_packet

_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"


def insert_app1_xmp(jpeg: bytes, packet: bytes) -> bytes | None:
    """Insert an APP1 XMP segment after SOI and any APP0 (JFIF); None if it exceeds 64 KB."""
    payload = _XMP_ID + packet
    if len(payload) + 2 > 0xFFFF:
        return None
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    at = 2
    if jpeg[2:4] == b"\xff\xe0":
        at = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return b"".join((jpeg[:at], segment, jpeg[at:]))


class JPEG(Codec):
    """JPEG (lossy), quality 90 and 4:2:0 by default: what monitoring and previews want."""

    name = "jpeg"
    extension = "jpg"
    mime_type = "image/jpeg"
    lossless = False
    dtypes = frozenset({"uint8"})
    channels = frozenset({1, 3})
    defaults = {"quality": 90}
    library = "libjpeg_turbo"
    alternative = "'lossless' (JPEG XL) or 'png'"

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode with libjpeg-turbo (releases the GIL)."""
        return bytes(imagecodecs.jpeg8_encode(pixels, level=int(params["quality"])))

    def decode(self, data: bytes) -> Pixels:
        """Decode with libjpeg-turbo."""
        return np.asarray(imagecodecs.jpeg8_decode(data))

    def embed(self, data: bytes, record_json: str) -> bytes | None:
        """Insert the record as XMP (APP1), or None (sidecar) if it exceeds a segment."""
        return insert_app1_xmp(data, xmp_packet(record_json))

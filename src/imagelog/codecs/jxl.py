"""JPEG XL through libjxl (imagecodecs): lossless effort 1, the fastest lossless that beats PNG."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import imagecodecs
import numpy as np

from .base import Codec, Pixels, xmp_packet

_SIGNATURE_BOX = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_FTYP_BOX = b"\x00\x00\x00\x14ftypjxl \x00\x00\x00\x00jxl "


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 8) + kind + payload


def to_container(codestream: bytes, xml: bytes) -> bytes:
    """Wrap a bare JPEG XL codestream in the ISO BMFF container with an ``xml `` (XMP) box."""
    return b"".join((_SIGNATURE_BOX, _FTYP_BOX, _box(b"xml ", xml), _box(b"jxlc", codestream)))


class JPEGXL(Codec):
    """JPEG XL; lossless at effort 1 by default, lossy with ``distance`` > 0."""

    name = "jxl"
    extension = "jxl"
    mime_type = "image/jxl"
    lossless = True
    dtypes = frozenset({"uint8", "uint16"})
    defaults = {"effort": 1, "distance": 0.0}
    library = "libjxl"
    alternative = "'tiff' or 'npy'"

    def is_lossless(self, params: Mapping[str, Any]) -> bool:
        """Lossless at distance 0."""
        return float(params["distance"]) <= 0

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode one frame on one thread (the pipeline runs frames in parallel instead)."""
        distance = float(params["distance"])
        if distance <= 0:
            return bytes(
                imagecodecs.jpegxl_encode(
                    pixels, lossless=True, effort=int(params["effort"]), numthreads=1
                )
            )
        return bytes(
            imagecodecs.jpegxl_encode(
                pixels, distance=distance, effort=int(params["effort"]), numthreads=1
            )
        )

    def decode(self, data: bytes) -> Pixels:
        """Decode (bare codestream or container)."""
        return np.asarray(imagecodecs.jpegxl_decode(data))

    def embed(self, data: bytes, record_json: str) -> bytes | None:
        """Wrap the codestream in a container holding the record as XMP."""
        if data[:2] != b"\xff\x0a":
            return None
        return to_container(data, xmp_packet(record_json))

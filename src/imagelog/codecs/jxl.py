"""JPEG XL through libjxl: lossless effort 1, the fastest lossless format that beats PNG.

Encoding goes through imagecodecs, except lossless effort 1 (libjxl's "fast lossless" path)
when ``pyjpegxl`` is installed (``pip install imagelog[fast-jxl]``): the libjxl 0.11 inside
imagecodecs picks its SIMD code for that path only on CPUs whose OS enables AVX-512 state, so on
AVX2-only machines (many cloud VMs) it runs scalar code, 3-4x slower. pyjpegxl's build takes the
AVX2 path; its output is a valid codestream of the same size that imagecodecs decodes exactly.
``encoder="imagecodecs"`` forces the former. Decoding is always imagecodecs.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from typing import Any

import imagecodecs
import numpy as np

from ..errors import FormatMismatch
from .base import Codec, Pixels, imagecodecs_version, xmp_packet

_ENCODERS = ("auto", "imagecodecs", "pyjpegxl")


@functools.cache
def fast_lossless_module() -> Any | None:
    """The ``pyjpegxl`` module if installed, else None.

    pyjpegxl encodes each frame on a pool of threads unless told otherwise; imagelog already
    runs one frame per core, so on first use it sets pyjpegxl to one thread, unless the program
    has chosen a count itself (``pyjpegxl.set_num_threads``).
    """
    try:
        import pyjpegxl
    except ImportError:
        return None
    if pyjpegxl.get_num_threads() == 0:  # 0: pyjpegxl's default, "as many as it likes"
        pyjpegxl.set_num_threads(1)
    return pyjpegxl


_SIGNATURE_BOX = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_FTYP_BOX = b"\x00\x00\x00\x14ftypjxl \x00\x00\x00\x00jxl "


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 8) + kind + payload


def to_container(codestream: bytes, xml: bytes, *, level: int | None = None) -> bytes:
    """Wrap a bare JPEG XL codestream in the ISO BMFF container with an ``xml `` (XMP) box.

    ``level=10`` adds the ``jxll`` box that codestreams with more than 12 bits per sample need
    to conform (libjxl decodes them without it; stricter decoders may not).
    """
    jxll = _box(b"jxll", bytes([level])) if level is not None else b""
    return b"".join(
        (_SIGNATURE_BOX, _FTYP_BOX, jxll, _box(b"xml ", xml), _box(b"jxlc", codestream))
    )


def add_box_before_codestream(container: bytes, box: bytes) -> bytes | None:
    """Insert ``box`` before the first ``jxlc``/``jxlp`` box of a container, or None if none."""
    pos = 0
    while pos + 8 <= len(container):
        size, kind = struct.unpack(">I4s", container[pos : pos + 8])
        if kind in (b"jxlc", b"jxlp"):
            return container[:pos] + box + container[pos:]
        if size == 1:
            (size,) = struct.unpack(">Q", container[pos + 8 : pos + 16])
        if size < 8:  # size 0 ("to the end") or malformed, before any codestream box
            return None
        pos += size
    return None


@functools.cache
def _version() -> str:
    base = imagecodecs_version("libjxl")
    if fast_lossless_module() is None:
        return base
    from importlib.metadata import version

    return f"{base}; pyjpegxl {version('pyjpegxl')} for lossless effort 1"


class JPEGXL(Codec):
    """JPEG XL; lossless at effort 1 by default, lossy with ``distance`` > 0."""

    name = "jxl"
    extension = "jxl"
    mime_type = "image/jxl"
    lossless = True
    dtypes = frozenset({"uint8", "uint16"})
    defaults = {"effort": 1, "distance": 0.0, "encoder": "auto"}
    library = "libjxl"
    alternative = "'tiff' or 'npy'"

    @property
    def version(self) -> str:
        """imagecodecs' libjxl, and pyjpegxl when it encodes lossless effort 1."""
        return _version()

    def params(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with ``overrides``; ``encoder`` is auto, imagecodecs or pyjpegxl."""
        out = super().params(overrides)
        if out["encoder"] not in _ENCODERS:
            raise FormatMismatch(
                f"format 'jxl': encoder must be one of {', '.join(_ENCODERS)}, got {out['encoder']!r}"
            )
        if out["encoder"] == "pyjpegxl" and fast_lossless_module() is None:
            raise FormatMismatch(
                "format 'jxl': encoder='pyjpegxl' needs the pyjpegxl package "
                "(pip install 'imagelog[fast-jxl]')"
            )
        return out

    def is_lossless(self, params: Mapping[str, Any]) -> bool:
        """Lossless at distance 0."""
        return float(params["distance"]) <= 0

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode one frame on one thread (the pipeline runs frames in parallel instead)."""
        distance = float(params["distance"])
        fast = fast_lossless_module() if params.get("encoder", "auto") != "imagecodecs" else None
        if distance <= 0 and int(params["effort"]) == 1 and fast is not None:
            arr = pixels if pixels.ndim == 3 else pixels[:, :, None]
            return bytes(
                fast.encode_from_numpy(arr, lossless=True, speed=fast.EncoderSpeed.Lightning)
            )
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

    def encode_with_record(
        self, pixels: Pixels, params: Mapping[str, Any], record_json: str
    ) -> tuple[bytes, bool]:
        """Encode and put the record in an ``xml `` box (16-bit frames also get ``jxll``)."""
        data = self.encode(pixels, params)
        level = 10 if pixels.dtype.itemsize > 1 else None
        embedded = self._embed(data, record_json, level)
        return (data, False) if embedded is None else (embedded, True)

    def embed(self, data: bytes, record_json: str) -> bytes | None:
        """Put the record in an ``xml `` box (wrapping a bare codestream in a container)."""
        return self._embed(data, record_json, None)

    @staticmethod
    def _embed(data: bytes, record_json: str, level: int | None) -> bytes | None:
        xml = xmp_packet(record_json)
        if data[:2] == b"\xff\x0a":
            return to_container(data, xml, level=level)
        if data[:12] == _SIGNATURE_BOX:
            return add_box_before_codestream(data, _box(b"xml ", xml))
        return None

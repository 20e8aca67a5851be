"""PNG for conversions (``export``, ``imagelog show --open x.png``): the fastest lossless PNG here.

With ``isal`` installed (the ``fast-jxl`` extra), every row is SUB-filtered in numpy and the
whole image deflated by ISA-L at level 1: at 1080p RGB 16 ms of CPU a frame against 39 ms for
libpng with ``FAST_PNG`` (zlib's Huffman-only pass), 6% larger (docs/fleet.md). Without it,
libpng with ``FAST_PNG``. Both release the GIL, so threads convert frames in parallel. The file
is a plain PNG (8 or 16 bits, gray, gray + alpha, RGB, RGBA, IDAT chunks of up to 1 GiB) that
libpng, Pillow, OpenCV and browsers read.
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Any

import numpy as np

__all__ = ["BACKENDS", "FAST_PNG", "backend", "encode"]

#: libpng's settings when ``isal`` is missing: deflate level 1, Huffman only, the SUB filter on
#: every row (no search). At 1080p about 10x faster to write than libpng's default, no larger.
FAST_PNG: dict[str, int] = {"level": 1, "strategy": 2, "filter": 16}
BACKENDS = ("auto", "isal", "libpng")

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> gray, gray + alpha, RGB, RGBA
_MAX_IDAT = 2**30


@functools.cache
def _isal() -> Any | None:
    """``isal.isal_zlib`` if installed, else None."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


def backend() -> str:
    """What ``encode`` uses: ``"isal"`` or ``"libpng"``."""
    return "libpng" if _isal() is None else "isal"


def encode(arr: np.ndarray[Any, Any], *, using: str = "auto") -> bytes:
    """8- or 16-bit pixels (``HxW`` or ``HxWxC``, C = 1-4) as PNG. ``using``: ``"auto"`` (ISA-L
    when installed), ``"isal"`` or ``"libpng"``."""
    if using not in BACKENDS:
        raise ValueError(f"unknown PNG encoder {using!r}: choose one of {', '.join(BACKENDS)}")
    if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3) or arr.size == 0:
        raise ValueError(f"PNG holds 8- or 16-bit 2-D images, not {arr.dtype} {arr.shape}")
    channels = 1 if arr.ndim == 2 else int(arr.shape[2])
    if channels not in _COLOR_TYPE:
        raise ValueError(f"PNG holds 1 to 4 channels, not {channels}")
    canonical = tuple(int(np.prod(arr.shape[i + 1 :])) * arr.itemsize for i in range(arr.ndim))
    if arr.strides != canonical:  # numpy's odd strides on length-1 axes too: libpng refuses them
        arr = arr.copy()
    isal = _isal() if using != "libpng" else None
    if using == "isal" and isal is None:
        raise ValueError(
            "PNG encoder 'isal' needs the isal package (pip install 'imagelog[fast-jxl]')"
        )
    if isal is None:
        import imagecodecs

        return bytes(imagecodecs.png_encode(arr, **FAST_PNG))
    height, width = arr.shape[:2]
    depth = arr.dtype.itemsize
    pixels = arr.astype(">u2", copy=False) if depth == 2 else arr  # PNG is big-endian
    rows = pixels.view(np.uint8).reshape(height, -1)
    bpp = channels * depth  # the SUB filter subtracts the same byte of the pixel to the left
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 1
    filtered[:, 1 : 1 + bpp] = rows[:, :bpp]
    np.subtract(rows[:, bpp:], rows[:, :-bpp], out=filtered[:, 1 + bpp :])
    idat = memoryview(isal.compress(filtered, 1))
    header = struct.pack(">IIBBBBB", width, height, 8 * depth, _COLOR_TYPE[channels], 0, 0, 0)
    parts = [_SIGNATURE, *_chunk(b"IHDR", header, isal.crc32)]
    for at in range(0, len(idat), _MAX_IDAT):
        parts += _chunk(b"IDAT", idat[at : at + _MAX_IDAT], isal.crc32)
    parts += _chunk(b"IEND", b"", zlib.crc32)
    return b"".join(parts)


def _chunk(kind: bytes, body: bytes | memoryview, crc32: Any) -> list[bytes | memoryview]:
    crc = crc32(body, zlib.crc32(kind))
    return [struct.pack(">I", len(body)) + kind, body, struct.pack(">I", crc & 0xFFFFFFFF)]

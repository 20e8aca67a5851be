"""Raw arrays as ``.npy`` (NumPy's format), optionally zstd- or lz4-compressed; any dtype, exact.

For float32 frames, bool masks and anything no image format holds as is. Decodes back to exactly
the array that was logged (dtype, shape, byte order). The record goes to a ``.json`` sidecar: a
``.npy`` file has no place for it that ``numpy.load`` would keep.

A compressed file is the zstd or lz4 frame of the whole ``.npy`` file, so ``zstd -d`` (or
``lz4 -d``) then ``numpy.load`` reads it without imagelog.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import imagecodecs
import numpy as np

from ..errors import FormatMismatch
from .base import Codec, Pixels

NPY_MAGIC = b"\x93NUMPY"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
LZ4_MAGIC = b"\x04\x22\x4d\x18"
_COMPRESSIONS = ("none", "zstd", "lz4")


class Npy(Codec):
    """Raw ``.npy`` arrays; ``compression`` is ``"none"``, ``"zstd"`` (default) or ``"lz4"``."""

    name = "npy"
    extension = "npy"
    mime_type = "application/x-npy"
    lossless = True
    dtypes = frozenset({"uint8", "uint16", "float32", "bool"})
    defaults = {"compression": "zstd", "level": 1}
    library = "zstd"

    def params(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with ``overrides``; ``compression`` must be none, zstd or lz4."""
        out = super().params(overrides)
        if out["compression"] not in _COMPRESSIONS:
            raise FormatMismatch(
                f"format 'npy': compression must be one of {', '.join(_COMPRESSIONS)}, "
                f"got {out['compression']!r}"
            )
        return out

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Write the ``.npy`` bytes, then compress them (the compressors release the GIL)."""
        buf = io.BytesIO()
        np.save(buf, pixels, allow_pickle=False)
        raw = buf.getvalue()
        compression = params["compression"]
        if compression == "zstd":
            return bytes(imagecodecs.zstd_encode(raw, level=int(params["level"])))
        if compression == "lz4":
            return bytes(imagecodecs.lz4f_encode(raw))
        return raw

    def decode(self, data: bytes) -> Pixels:
        """Decompress (by magic bytes) and load the array."""
        if data[:4] == ZSTD_MAGIC:
            data = bytes(imagecodecs.zstd_decode(data))
        elif data[:4] == LZ4_MAGIC:
            data = bytes(imagecodecs.lz4f_decode(data))
        return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))

    def extract(self, data: bytes) -> str | None:
        """``.npy`` files carry no record (it is in the sidecar)."""
        return None

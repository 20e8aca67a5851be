"""WebP through libwebp (imagecodecs): lossless (fastest method) or lossy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import imagecodecs
import numpy as np

from .base import Codec, Pixels


class WebP(Codec):
    """WebP; lossless with method 0 by default (the only WebP setting near camera rates)."""

    name = "webp"
    extension = "webp"
    mime_type = "image/webp"
    lossless = True
    dtypes = frozenset({"uint8"})
    channels = frozenset({3, 4})
    defaults = {"lossless": True, "method": 0, "quality": 90}
    library = "libwebp"
    alternative = "'lossless' (JPEG XL) or 'png'"

    def is_lossless(self, params: Mapping[str, Any]) -> bool:
        """Lossless unless ``lossless=False``."""
        return bool(params["lossless"])

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode (lossless unless ``lossless=False``)."""
        lossless = bool(params["lossless"])
        level = 100 if lossless else int(params["quality"])
        return bytes(
            imagecodecs.webp_encode(pixels, level=level, lossless=lossless, method=params["method"])
        )

    def decode(self, data: bytes) -> Pixels:
        """Decode; an opaque RGBA frame comes back as RGB (libwebp drops an all-255 alpha)."""
        return np.asarray(imagecodecs.webp_decode(data))

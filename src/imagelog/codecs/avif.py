"""AVIF through libavif (imagecodecs): lossy, the smallest files, far too slow for camera rates.

At 1080p it encodes 1-3 frames/s per core on our 2-core reference machine, so no preset uses it;
it is here for the occasional still where size matters most. The record goes to a sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import imagecodecs
import numpy as np

from .base import Codec, Pixels


class AVIF(Codec):
    """AVIF (lossy), quality 75 at speed 8 (the fastest setting that still compresses well)."""

    name = "avif"
    extension = "avif"
    mime_type = "image/avif"
    lossless = False
    dtypes = frozenset({"uint8"})
    defaults = {"quality": 75, "speed": 8}
    library = "libavif"
    alternative = "'lossless' (JPEG XL) or 'png'"

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode on one thread (the pipeline runs frames in parallel instead)."""
        return bytes(
            imagecodecs.avif_encode(
                pixels, level=int(params["quality"]), speed=int(params["speed"]), numthreads=1
            )
        )

    def decode(self, data: bytes) -> Pixels:
        """Decode."""
        return np.asarray(imagecodecs.avif_decode(data))

    def extract(self, data: bytes) -> str | None:
        """AVIF files written here carry no record (it is in the sidecar)."""
        return None

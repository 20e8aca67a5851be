"""Background verification: decode lossless output and compare it with the logged pixels.

``verify="sample"`` checks 1 frame in 100 (and the first, so a bad setting shows at once),
``"all"`` every frame, a float that fraction. Lossy and passthrough frames are never checked.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from .codecs.base import Codec, Pixels, as_logged
from .frames import channels_of

__all__ = ["SAMPLE_FRACTION", "Sampler", "Verifier"]

#: The fraction of lossless frames ``verify="sample"`` checks.
SAMPLE_FRACTION = 0.01


def fraction_of(setting: str | float) -> float:
    """The fraction of frames a ``verify`` setting checks.

    >>> fraction_of("off"), fraction_of("sample"), fraction_of("all"), fraction_of(0.25)
    (0.0, 0.01, 1.0, 0.25)
    """
    if isinstance(setting, str):
        return {"off": 0.0, "sample": SAMPLE_FRACTION, "all": 1.0}[setting]
    return float(setting)


class Sampler:
    """Picks a fraction of frames, evenly spread and deterministic (the first one always)."""

    def __init__(self, setting: str | float) -> None:
        self.fraction = fraction_of(setting)
        self._seen = 0
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether the next frame is one to take."""
        if self.fraction <= 0:
            return False
        with self._lock:
            self._seen += 1
            n = self._seen
        return n == 1 or math.floor(n * self.fraction) > math.floor((n - 1) * self.fraction)


class Verifier:
    """Decides which frames to check (evenly spread, deterministic) and checks them."""

    def __init__(self, setting: str | float) -> None:
        self._sampler = Sampler(setting)
        self.fraction = self._sampler.fraction

    def due(self, codec: Codec, params: Mapping[str, Any]) -> bool:
        """Whether this frame (encoded losslessly by ``codec``) is one to check."""
        if self.fraction <= 0 or not codec.is_lossless(params):
            return False
        return self._sampler.due()

    @staticmethod
    def check(codec: Codec, pixels: Pixels, data: bytes) -> str | None:
        """Decode ``data``; return None if it equals ``pixels``, else what differs."""
        try:
            decoded = as_logged(codec.decode(data), pixels.dtype.name, channels_of(pixels))
        except Exception as exc:
            return f"the file does not decode: {type(exc).__name__}: {exc}"
        if decoded.shape != pixels.shape or decoded.dtype != pixels.dtype:
            return (
                f"decoded {decoded.dtype.name} {decoded.shape}, logged {pixels.dtype.name} "
                f"{pixels.shape}"
            )
        if not np.array_equal(decoded, pixels):
            wrong = int(np.count_nonzero(decoded != pixels))
            return f"{wrong} of {pixels.size} samples differ"
        return None

"""The write-time checks: ``verify=`` (decode lossless output and compare it with the logged
pixels) and ``check_encoding=`` (look for signs of a mis-declared frame, ``checks.py``).

``verify="sample"`` checks 1 frame in 100 (and the first, so a bad setting shows at once),
``"all"`` every frame, a float that fraction. Lossy and passthrough frames are never checked.
``check_encoding=`` samples the same way.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._jobs import FrameJob, Stats
from .checks import check_frame
from .codecs.base import Codec, Pixels, as_logged
from .frames import channels_of
from .ids import uuid7
from .record import encoding_record

__all__ = ["SAMPLE_FRACTION", "EncodingChecks", "Sampler", "Verifier"]

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
    def compare(codec: Codec, pixels: Pixels, data: bytes) -> str | None:
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


class EncodingChecks:
    """``check_encoding=``: sampled checks of written frames; each finding is counted, warned
    about and written to the index as an ``encoding_warning`` event (never raises)."""

    def __init__(
        self,
        setting: str | float,
        *,
        stats: Stats,
        clock: Callable[[], int],
        report: Callable[[str, BaseException], None],
        warn: Callable[[str, str, BaseException], None],
        append: Callable[[dict[str, Any], int], None],
        where: str,
    ) -> None:
        self._sampler = Sampler(setting)
        self.stats = stats
        self.clock = clock
        self.report = report
        self.warn = warn
        self.append = append  # where the events go (``IndexWriter.append``)
        self.where = where

    def due(self) -> bool:
        """Whether the next written frame is one to check."""
        return self._sampler.due()

    def run(self, job: FrameJob, final: dict[str, Any]) -> None:
        """Check one written frame (``final``: its record as written)."""
        frame = job.frame
        assert frame.pixels is not None
        try:
            findings = check_frame(frame.pixels, frame.pixel_format, bit_depth=frame.bit_depth)
        except Exception as exc:
            self.report("encoding-check", exc)
            return
        self.stats.add(job.source, "encoding_checked")
        for f in findings:
            now = self.clock()
            rec = encoding_record(
                final, now_ns=now, rid=uuid7(now), kind=f.kind, message=f.message, values=f.values
            )
            self.stats.add(job.source, "encoding_warnings")
            with self.stats.lock:
                self.stats.warnings_by_kind[f.kind] += 1
            try:  # the frame is written: a failed event line must not count it as failed
                self.append(rec, job.created_ns)  # the frame's hour: purged with it
            except Exception as exc:
                self.report("encoding-check", exc)
            self.warn(
                f"encoding-{f.kind}",
                f"{self.where}: {final['file']['path']}:",
                ValueError(f.message),
            )

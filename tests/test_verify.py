"""verify="sample"/"all"/fraction: lossless output is decoded in the background and compared."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog import codecs
from imagelog._verify import Verifier
from imagelog.codecs.base import Pixels
from imagelog.codecs.png import PNG


class FlipsOnePixel(PNG):
    """A deliberately broken codec: claims to be lossless, changes one sample."""

    name = "broken-test"

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode a copy with the first sample changed."""
        bad = pixels.copy()
        bad.flat[0] ^= 1
        return super().encode(bad, params)


class Undecodable(PNG):
    """A deliberately broken codec whose output does not decode."""

    name = "undecodable-test"

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Encode, then cut the file short."""
        return super().encode(pixels, params)[:60]


@pytest.fixture(name="broken_codecs")
def _broken_codecs() -> Iterator[None]:
    codecs.register(FlipsOnePixel())
    codecs.register(Undecodable())
    yield
    for name in ("broken-test", "undecodable-test"):
        del codecs._REGISTRY[name]


def _log(run_dir: Path, frame: np.ndarray[Any, Any], n: int, **settings: Any) -> dict[str, Any]:
    with imagelog.open(run_dir, **settings) as log:
        for _ in range(n):
            log.log(frame)
    return log.stats()


class TestVerify:
    def test_all_checks_every_lossless_frame(
        self, run_dir: Path, rgb: np.ndarray[Any, Any]
    ) -> None:
        """verify="all" decodes and compares every frame; good codecs never fail."""
        st = _log(run_dir, rgb[:32, :32], 12, verify="all")
        assert st["verified"] == 12
        assert st["verify_failed"] == 0

    def test_sample_checks_the_first_and_one_in_a_hundred(
        self, run_dir: Path, rgb: np.ndarray[Any, Any]
    ) -> None:
        """verify="sample" checks frame 1, 100 and 200 of 250."""
        st = _log(run_dir, rgb[:8, :8], 250, verify="sample", format="png")
        assert st["verified"] == 3

    def test_fraction_spreads_checks_evenly(self) -> None:
        """A fraction checks that share of frames, evenly spread, the first included."""
        v = Verifier(0.25)
        codec = codecs.get("png")
        due = [v.due(codec, {"level": 1}) for _ in range(12)]
        assert due == [True, False, False, True, False, False, False, True] + [False] * 3 + [True]

    def test_off_and_lossy_are_not_checked(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """verify="off" checks nothing, and lossy frames are never checked."""
        assert _log(run_dir / "a", rgb[:16, :16], 3)["verified"] == 0
        assert (
            _log(run_dir / "b", rgb[:16, :16], 3, verify="all", format="preview")["verified"] == 0
        )

    def test_mismatch_is_counted_and_reported(
        self,
        run_dir: Path,
        rgb: np.ndarray[Any, Any],
        broken_codecs: None,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A codec that changes pixels is caught: counted in stats and warned through the logger."""
        with caplog.at_level(logging.WARNING, logger="imagelog"):
            st = _log(run_dir, rgb[:16, :16], 3, verify="all", format="broken-test")
        assert st["verified"] == 3
        assert st["verify_failed"] == 3
        assert st["written"] == 3  # the file is still kept: it is evidence
        messages = [r.getMessage() for r in caplog.records if r.name == "imagelog"]
        assert any("verify" in m and "1 of 768 samples differ" in m for m in messages)

    def test_undecodable_output_is_a_mismatch(
        self, run_dir: Path, rgb: np.ndarray[Any, Any], broken_codecs: None
    ) -> None:
        """Output that no longer decodes counts as a failed verification, not a crash."""
        st = _log(run_dir, rgb[:16, :16], 2, verify="all", format="undecodable-test")
        assert st["verify_failed"] == 2
        assert st["failed"] == 0

"""Every preset x every dtype and layout a camera produces, through open().log() and read().load()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog import codecs

from .test_codecs import LAYOUTS, make_frame


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("preset", list(codecs.PRESETS))
def test_preset_round_trip(
    run_dir: Path, rgb: np.ndarray[Any, Any], preset: str, layout: str
) -> None:
    """Lossless choices come back exactly; preview's JPEG is close and recorded as lossy."""
    frame = make_frame(layout, rgb)
    with imagelog.open(run_dir, format=preset) as log:
        rid = log.log(frame, source="cam")
    run = imagelog.read(run_dir)
    rec = run.get(rid)
    out = run.load(rec)
    expected = codecs.PRESETS[preset][frame.dtype.name]
    if frame.ndim == 3 and frame.shape[2] == 4 and expected.startswith("jpeg"):
        expected = "jxl:effort=1"  # JPEG has no alpha: preview falls back to lossless
    if frame.shape[0] * frame.shape[1] < codecs.SMALL_FRAME_PIXELS:  # small frames: measured
        expected = codecs.small_frame_spec(preset, frame.dtype.name) or expected
    assert rec["image"]["format"] == codecs.parse_spec(expected)[0]
    assert out.dtype == frame.dtype
    assert out.shape == frame.shape
    if rec["image"]["lossless"]:
        assert np.array_equal(out, frame)
    else:
        assert preset == "preview"
        mse = np.mean((out.astype(np.float64) - frame) ** 2)
        assert 10 * np.log10(255**2 / mse) > 30


def test_small_frames_choose_their_lossless_codec(run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
    """``lossless`` stores small 8-bit frames as TIFF (zstd) and larger ones as JPEG XL, both
    exactly; an explicit format, ``compact`` and tuned ``codec_options`` are kept as asked."""
    small, large = rgb[:128, :128], np.tile(rgb, (2, 2, 1))
    assert small.shape[0] * small.shape[1] < codecs.SMALL_FRAME_PIXELS <= large.size // 3
    with imagelog.open(run_dir) as log:
        ids = [log.log(small), log.log(large), log.log(small, format="jxl"),
               log.log(small, format="compact")]  # fmt: skip
    with imagelog.open(run_dir, codec_options={"effort": 2}) as log:
        ids.append(log.log(small))
    run = imagelog.read(run_dir)
    recs = [run.get(i) for i in ids]
    assert [r["image"]["format"] for r in recs] == ["tiff", "jxl", "jxl", "jxl", "jxl"]
    for rec, frame in zip(recs, [small, large, small, small, small], strict=True):
        assert rec["image"]["lossless"]
        assert np.array_equal(run.load(rec), frame)

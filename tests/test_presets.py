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
    assert rec["image"]["format"] == codecs.parse_spec(expected)[0]
    assert out.dtype == frame.dtype
    assert out.shape == frame.shape
    if rec["image"]["lossless"]:
        assert np.array_equal(out, frame)
    else:
        assert preset == "preview"
        mse = np.mean((out.astype(np.float64) - frame) ** 2)
        assert 10 * np.log10(255**2 / mse) > 30

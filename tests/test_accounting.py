"""Every accepted frame is accounted for in the index: each id ``log()`` returned ends as exactly
one ``logged``, ``dropped`` or ``failed`` record, and ``stats()`` agrees with the index."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import imagelog
from imagelog import codecs
from imagelog.codecs.base import Codec
from imagelog.samples import scene

FORMATS = [*codecs.PRESETS, *codecs.names()]
SCENE = scene(64, 48)


def _pixels(dtype: str, channels: int, width: int, height: int) -> np.ndarray[Any, Any]:
    """A crop of a realistic scene as ``dtype`` with ``channels`` channels."""
    rgb = SCENE[:height, :width]
    gray = rgb.mean(axis=2).astype(np.uint8)
    base = {1: gray, 3: rgb, 4: np.dstack([rgb, gray])}[channels]
    if channels == 1 and dtype != "bool":
        base = base.reshape(height, width)
    if dtype == "uint8":
        return np.ascontiguousarray(base)
    if dtype == "uint16":
        return base.astype(np.uint16) * 257
    if dtype == "float32":
        return base.astype(np.float32) / 255
    return base > 127  # bool


def _as_input(pixels: np.ndarray[Any, Any], kind: str) -> tuple[object, dict[str, Any]]:
    """The frame as the caller hands it over: array, PIL image, raw bytes or encoded PNG."""
    if kind == "array":
        return pixels, {}
    mode = {(1, "uint8"): "L", (3, "uint8"): "RGB", (4, "uint8"): "RGBA", (1, "uint16"): "I;16"}
    key = (1 if pixels.ndim == 2 else pixels.shape[2], str(pixels.dtype))
    if key not in mode:
        return pixels, {}  # kinds other than arrays only hold these
    if kind == "pil":
        return Image.fromarray(pixels), {}
    if kind == "raw":
        h, w = pixels.shape[:2]
        return pixels.tobytes(), {"size": (w, h), "mode": mode[key]}
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue(), {}


def test_everything_log_accepts_is_stored(tmp_path: Path) -> None:
    """Input kind x dtype x channels x format: ``log()`` either raises in the caller's thread or
    the frame is stored (a ``logged`` record and its file, never ``failed``). That it loads back
    as logged is tests/test_matrix.py's."""
    with imagelog.open(tmp_path / "run", strict=False) as log:

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            kind=st.sampled_from(["array", "pil", "raw", "png"]),
            dtype=st.sampled_from(["uint8", "uint16", "float32", "bool"]),
            channels=st.sampled_from([1, 3, 4]),
            fmt=st.sampled_from(FORMATS),
            width=st.integers(1, 64),
            height=st.integers(1, 48),
        )
        def check(kind: str, dtype: str, channels: int, fmt: str, width: int, height: int) -> None:
            frame, extra = _as_input(_pixels(dtype, channels, width, height), kind)
            failed = log.stats()["failed"]
            try:
                rid = log.log(frame, source="m", format=fmt, **extra)
            except (ValueError, TypeError):
                return  # refused in the caller's thread, with a clear error: fine
            assert log.flush(timeout=60)
            st_ = log.stats()
            assert st_["failed"] == failed, (kind, dtype, channels, fmt, st_["last_error"])
            rec = next(
                r for r in imagelog.read(tmp_path / "run").records() if r["image"]["id"] == rid
            )
            assert (tmp_path / "run" / rec["file"]["path"]).stat().st_size == rec["file"]["size"]

        check()


def _actions(run_dir: Path) -> Counter[str]:
    return Counter(
        r["event"]["action"] for r in imagelog.read(run_dir).records(include_events=True)
    )


class _Broken(Codec):
    """A codec that accepts every frame and then fails in the encoder."""

    name = "broken"
    extension = "bin"
    mime_type = "application/octet-stream"
    lossless = True
    dtypes = ("uint8",)
    channels = (1, 3, 4)
    defaults: ClassVar[Mapping[str, Any]] = {}
    library = "broken"

    def encode(self, pixels: Any, params: Any) -> bytes:
        raise RuntimeError("the encoder gave up")

    def decode(self, data: bytes) -> Any:
        raise NotImplementedError


@pytest.fixture(name="broken")
def _broken() -> Any:
    codecs.register(_Broken())
    yield "broken"
    codecs._REGISTRY.pop("broken", None)


def test_encoder_failure_is_a_failed_record(run_dir: Path, rgb: Any, broken: str) -> None:
    """A frame that fails in the encoder ends as a ``failed`` record with the error's text."""
    with imagelog.open(run_dir, strict=False) as log:
        ok = log.log(rgb, source="cam")
        bad = log.log(rgb, source="cam", format=broken, note="x")
    st_ = log.stats()
    assert (st_["logged"], st_["written"], st_["failed"]) == (2, 1, 1)
    recs = {r["image"]["id"]: r for r in imagelog.read(run_dir).records(include_events=True)}
    assert recs[ok]["event"]["action"] == "logged"
    failed = recs[bad]
    assert failed["event"]["action"] == "failed"
    assert failed["event"]["reason"] == "encode"
    assert failed["event"]["outcome"] == "failure"
    assert failed["error"] == {"type": "RuntimeError", "message": "the encoder gave up"}
    assert failed["meta"] == {"note": "x"}
    assert "file" not in failed
    assert failed["image"]["width"] == rgb.shape[1]
    assert _actions(run_dir) == Counter(logged=1, failed=1)

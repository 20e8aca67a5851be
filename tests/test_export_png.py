"""The PNG of conversions (``imagelog._png``): exact for every reader, with ISA-L or without."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog import _png
from imagelog.export import encode_as, export
from imagelog.samples import CameraSimulator

BACKENDS = ["isal", "libpng"]

FRAMES = [
    pytest.param((1080, 1920, 3), np.uint8, id="rgb8-1080p"),
    pytest.param((61, 97), np.uint8, id="gray8"),
    pytest.param((40, 50, 2), np.uint8, id="gray-alpha8"),
    pytest.param((40, 50, 4), np.uint8, id="rgba8"),
    pytest.param((61, 97), np.uint16, id="gray16"),
    pytest.param((29, 31, 3), np.uint16, id="rgb16"),
    pytest.param((1, 1), np.uint8, id="one-pixel"),
    pytest.param((9, 1, 3), np.uint16, id="one-column"),
]


@pytest.fixture(autouse=True)
def _isal_or_skip(request: pytest.FixtureRequest) -> None:
    """Tests of the ISA-L route need the ``isal`` package (the ``fast-jxl`` extra)."""
    backend = getattr(request.node, "callspec", None)
    if backend is not None and backend.params.get("backend") == "isal":
        pytest.importorskip("isal")


def frame(shape: tuple[int, ...], dtype: Any) -> np.ndarray[Any, Any]:
    """Camera-like pixels (a photo panned, with noise) at any shape and depth."""
    height, width = shape[:2]
    cam = CameraSimulator(max(width, 8), max(height, 8), seed=2).frame()[:height, :width]
    arr = cam
    if dtype == np.uint16:  # a photo's bytes on top, a ramp in the low byte
        arr = (cam.astype(np.uint16) << 8) | (np.arange(width, dtype=np.uint16) % 251)[:, None]
    channels = shape[2] if len(shape) == 3 else 1
    if channels == 1:
        return np.ascontiguousarray(arr[:, :, 1])
    return np.ascontiguousarray(np.concatenate([arr, arr[:, :, :1]], axis=2)[:, :, :channels])


def read_pillow(data: bytes) -> np.ndarray[Any, Any]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im)


def read_cv2(data: bytes, channels: int) -> np.ndarray[Any, Any]:
    import cv2

    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if channels == 3:
        return back[:, :, ::-1]
    if channels == 4:
        return back[:, :, [2, 1, 0, 3]]
    if channels == 2:  # OpenCV gives gray + alpha as BGRA
        return back[:, :, [0, 3]]
    return back  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("shape", "dtype"), FRAMES)
def test_readers_get_the_exact_pixels(shape: tuple[int, ...], dtype: Any, backend: str) -> None:
    """Pillow (but for 16-bit colour, which it reads as 8-bit), OpenCV and torchvision (when
    installed) read back what was encoded, bit for bit."""
    arr = frame(shape, dtype)
    data = _png.encode(arr, using=backend)
    channels = shape[2] if len(shape) == 3 else 1
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(read_cv2(data, channels).reshape(arr.shape), arr)
    if dtype == np.uint8 or channels == 1:
        back = read_pillow(data)
        assert back.dtype == arr.dtype and np.array_equal(back, arr)
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_png
    except ImportError:
        return
    tensor = decode_png(
        torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.UNCHANGED
    )
    back = tensor.permute(1, 2, 0).to(torch.int32).numpy()  # torch's uint16 has no numpy()
    assert np.array_equal(back.reshape(arr.shape), arr)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_png_split_into_many_idat_chunks(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compressed data past ``_MAX_IDAT`` goes into further IDAT chunks, each with its CRC."""
    monkeypatch.setattr(_png, "_MAX_IDAT", 1000)
    arr = frame((120, 160, 3), np.uint8)
    data = _png.encode(arr, using=backend)
    if backend == "isal":
        assert data.count(b"IDAT") > 3
    assert np.array_equal(read_pillow(data), arr)
    assert np.array_equal(read_cv2(data, 3), arr)


def test_without_isal_libpng_writes_the_png(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the ``isal`` package conversions still write PNG (libpng, ``FAST_PNG``); asking
    for ISA-L by name then says which package is missing."""
    monkeypatch.setattr(_png, "_isal", lambda: None)
    assert _png.backend() == "libpng"
    arr = frame((48, 64, 3), np.uint8)
    data = encode_as(arr, "png")
    assert np.array_equal(read_pillow(data), arr)
    with pytest.raises(ValueError, match=r"needs the isal package .*fast-jxl"):
        _png.encode(arr, using="isal")


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.zeros((4, 4), np.float32), "8- or 16-bit"),
        (np.zeros((0, 4), np.uint8), "8- or 16-bit"),
        (np.zeros(4, np.uint8), "8- or 16-bit"),
        (np.zeros((4, 4, 5), np.uint8), "1 to 4 channels, not 5"),
    ],
)
def test_what_png_cannot_hold_is_refused(arr: np.ndarray[Any, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _png.encode(arr)
    with pytest.raises(ValueError, match="unknown PNG encoder 'zlib'"):
        _png.encode(np.zeros((4, 4), np.uint8), using="zlib")


def test_conversion_reads_each_image_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A converted frame is read from storage once (one GET on S3), not once to check and
    again to decode."""
    cam = CameraSimulator(64, 48, seed=1)
    with imagelog.open(tmp_path / "run") as log:
        for i in range(3):
            log.log(cam.frame(), source="cam", format="jxl", i=i)
    run = imagelog.read(tmp_path / "run")
    reads: list[str] = []
    real = imagelog.Run.read_bytes

    def counting(self: imagelog.Run, rec: dict[str, Any]) -> bytes:
        reads.append(rec["image"]["id"])
        return real(self, rec)

    monkeypatch.setattr(imagelog.Run, "read_bytes", counting)
    report = export(run, tmp_path / "out", to="imagefolder")
    assert report.converted == {"jxl->png": 3} and len(reads) == 3 == len(set(reads))
    monkeypatch.undo()
    for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        back = read_pillow((tmp_path / "out" / row["file_name"]).read_bytes())
        assert np.array_equal(back, run.load(json.loads(row["record"])))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [2, 3, 4, 5])
def test_tiff_keeps_every_channel(channels: int, dtype: Any) -> None:
    """TIFF conversions keep every pixel: float RGB(A), gray + alpha, more than four channels
    (the layout unsaid, libtiff's wrapper wrote them as pages of the first rows); more than
    four channels, which PNG cannot hold, convert to TIFF."""
    import imagecodecs

    from imagelog.export import _encode

    arr = (np.arange(4 * 6 * channels) * 37 % 251).astype(dtype).reshape(4, 6, channels)
    data, ext = _encode(arr, "tiff")
    assert ext == "tif" and np.array_equal(imagecodecs.tiff_decode(data), arr)
    if channels == 2 and dtype == np.uint8:
        assert np.array_equal(read_pillow(data), arr)
    if channels > 4:
        data, ext = _encode(arr, "png")
        assert ext == "tif" and np.array_equal(imagecodecs.tiff_decode(data), arr)

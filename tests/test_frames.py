"""Input normalisation: every input kind, and every bad input with a clear error."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

import imagelog
from imagelog.frames import RawFrame, normalise, sniff_format


class TestInputs:
    def test_gray_rgb_rgba_and_16_bit_arrays(self) -> None:
        """HxW, HxWx1, HxWx3, HxWx4 in uint8 and uint16 normalise with the right fields."""
        for shape, channels in [((4, 6), 1), ((4, 6, 1), 1), ((4, 6, 3), 3), ((4, 6, 4), 4)]:
            for dtype in (np.uint8, np.uint16):
                f = normalise(np.ones(shape, dtype))
                assert (f.width, f.height, f.channels, f.dtype) == (
                    6,
                    4,
                    channels,
                    np.dtype(dtype).name,
                )

    def test_copy_by_default(self) -> None:
        """The frame is copied before log() returns, so the caller may reuse its buffer."""
        arr = np.zeros((4, 4, 3), np.uint8)
        f = normalise(arr)
        arr[:] = 255
        assert f.pixels is not None
        assert int(f.pixels.max()) == 0

    def test_copy_false_keeps_the_array(self) -> None:
        """copy=False hands the array over without a copy."""
        arr = np.zeros((4, 4, 3), np.uint8)
        f = normalise(arr, copy=False)
        assert f.pixels is arr

    def test_bgr_is_stored_as_rgb_and_recorded(self) -> None:
        """channel_order='BGR' reverses the channels and says so."""
        bgr = np.zeros((2, 2, 3), np.uint8)
        bgr[..., 0] = 10  # blue
        f = normalise(bgr, channel_order="BGR")
        assert f.pixels is not None
        assert f.pixels[0, 0].tolist() == [0, 0, 10]
        assert f.converted_from == "BGR"
        assert f.channel_order == "RGB"

    def test_pil_images(self) -> None:
        """PIL images of the common modes become arrays with the logged dtype."""
        rgb = Image.new("RGB", (5, 3), (1, 2, 3))
        assert normalise(rgb).pixels is not None
        assert normalise(Image.new("I;16", (5, 3))).dtype == "uint16"
        assert normalise(Image.new("1", (5, 3))).dtype == "bool"
        assert normalise(Image.new("P", (5, 3))).channels == 3

    def test_raw_bytes_with_size_and_mode(self) -> None:
        """Raw bytes with a declared size and mode, as the seed's Image.frombytes took them."""
        data = bytes(range(24))
        f = normalise(data, size=(4, 2), mode="RGB")
        assert f.pixels is not None
        assert f.pixels.shape == (2, 4, 3)
        f16 = normalise(RawFrame(bytes(16), size=(4, 2), mode="I;16"))
        assert f16.dtype == "uint16"

    def test_encoded_bytes_are_recognised(self, rgb: np.ndarray[Any, Any]) -> None:
        """JPEG, PNG and WebP bytes are sniffed and passed through with their size read."""
        for fmt, name in [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp")]:
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format=fmt)
            f = normalise(buf.getvalue())
            assert f.encoded_format == name
            assert (f.width, f.height) == (rgb.shape[1], rgb.shape[0])
            assert sniff_format(buf.getvalue()) == name


class TestBadInput:
    @pytest.mark.parametrize(
        ("frame", "kwargs", "error", "words"),
        [
            (np.zeros((4, 4, 7), np.uint8), {}, ValueError, "7 channels"),
            (np.zeros((0, 4, 3), np.uint8), {}, ValueError, "empty"),
            (np.zeros((4, 4), np.float64), {}, TypeError, "float64"),
            (np.zeros((4, 4), np.int64), {}, TypeError, "int64"),
            (np.zeros((2, 3, 4, 5), np.uint8), {}, ValueError, "shape"),
            (bytes(10), {"size": (4, 4), "mode": "RGB"}, ValueError, "needs 48 bytes"),
            (b"not an image at all", {}, ValueError, "size="),
            (object(), {}, TypeError, "cannot log an object"),
            (bytes(48), {"size": (4, 4), "mode": "CMYK"}, ValueError, "raw mode"),
        ],
    )
    def test_clear_error(self, frame: Any, kwargs: dict[str, Any], error: type, words: str) -> None:
        """Each bad input raises the promised builtin exception, with a message naming the problem."""
        with pytest.raises(error, match=words):
            normalise(frame, **kwargs)

    def test_errors_are_also_imagelog_errors(self) -> None:
        """Caller-thread errors subclass both the builtin and imagelog.ImageLogError."""
        with pytest.raises(imagelog.ImageLogError):
            normalise(np.zeros((4, 4, 7), np.uint8))
        with pytest.raises(imagelog.InvalidFrame):
            normalise(np.zeros((4, 4, 7), np.uint8))

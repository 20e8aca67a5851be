"""Camera pixel formats (#16): exact round trips, padded rows, conversions to RGB, caller errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import imagelog
from imagelog import audit, pixfmt
from imagelog.checks import check_frame
from imagelog.errors import FormatMismatch, InvalidFrame, UnsupportedInput
from imagelog.frames import normalise
from imagelog.samples import photo

Array = np.ndarray[Any, Any]

W, H = 96, 64  # small, even: every format holds it

BAYER = [f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 12, 16)]
YUV = ["yuyv", "uyvy", "nv12", "nv21", "i420"]
PLAIN = ["mono8", "mono16", "32fc1", "rgb8", "rgba8", "rgb16", "rgba16", "bgr8", "bgra8", "bgr16"]
EVERY = BAYER + YUV + PLAIN


def scene(fmt: pixfmt.PixelFormat, w: int = W, h: int = H, name: str = "chelsea.png") -> Array:
    """A crop of a photograph in ``fmt``'s dtype, scaled to its bit depth."""
    rgb = photo(name)[40 : 40 + h, 60 : 60 + w]
    if fmt.dtype == "uint16":
        return (rgb.astype(np.uint16) * 257) >> (16 - fmt.bit_depth)
    return rgb


def delivered(fmt: pixfmt.PixelFormat, w: int = W, h: int = H) -> Array:
    """The frame a camera in ``fmt`` would deliver for the photo, in the stored shape."""
    if fmt.dtype == "float32":
        return photo("coffee.png")[:h, :w, 1].astype(np.float32) / 255
    return pixfmt.from_rgb(scene(fmt, w, h), fmt)


def padded(stored: Array, fmt: pixfmt.PixelFormat, stride: int) -> bytes:
    """``stored`` as a buffer whose rows are ``stride`` bytes (I420 chroma: ``stride // 2``)."""
    w = stored.shape[1]
    h = stored.shape[0] * 2 // 3 if fmt.kind in ("yuv420sp", "yuv420p") else stored.shape[0]
    raw = np.ascontiguousarray(stored).view(np.uint8).reshape(-1)
    if fmt.kind == "yuv420p":
        planes = [(h, w, stride), (h // 2, w // 2, stride // 2), (h // 2, w // 2, stride // 2)]
    elif fmt.kind == "yuv420sp":
        planes = [(h, w, stride), (h // 2, w, stride)]
    else:
        planes = [(h, fmt.row_bytes(w), stride)]
    out, pos = bytearray(), 0
    for rows, row, pitch in planes:
        block = np.full((rows, pitch), 0xAB, np.uint8)  # padding a reader must never see
        block[:, :row] = raw[pos : pos + rows * row].reshape(rows, row)
        pos += rows * row
        out += block.tobytes()
    assert pos == raw.size
    return bytes(out)


@pytest.fixture(name="log")
def _log(run_dir: Path) -> Any:
    with imagelog.open(run_dir, strict=True) as log:
        yield log


def only(run_dir: Path) -> tuple[imagelog.Run, dict[str, Any]]:
    run = imagelog.read(run_dir)
    (rec,) = run.records()
    return run, rec


class TestRoundTrip:
    """Every pixel format comes back exactly as delivered, padded rows or not."""

    @pytest.mark.parametrize("name", EVERY)
    @pytest.mark.parametrize("pad", [0, 64])
    def test_buffer(self, log: imagelog.ImageLog, run_dir: Path, name: str, pad: int) -> None:
        """Bytes with size= and stride=: the load is the frame without its padding."""
        fmt = pixfmt.parse(name)
        frame = delivered(fmt)
        stride = fmt.row_bytes(W) + pad
        log.log(padded(frame, fmt, stride), size=(W, H), pixel_format=name, stride=stride)
        log.flush()
        run, rec = only(run_dir)
        image = rec["image"]
        assert (image["width"], image["height"], image["stride"]) == (W, H, stride)
        assert image["bit_depth"] == fmt.bit_depth
        assert image["lossless"] is True
        got = run.load(rec)
        if fmt.pattern.startswith("BGR"):  # stored as RGB, like channel_order="BGR"
            assert image["pixel_format"] == name.replace("bgr", "rgb")
            assert image["converted_from"] == fmt.pattern
            frame = pixfmt.from_rgb(scene(fmt), name.replace("bgr", "rgb"))
        else:
            assert image["pixel_format"] == name
        assert got.dtype == frame.dtype and got.shape == frame.shape
        np.testing.assert_array_equal(got, frame)

    @pytest.mark.parametrize("name", EVERY)
    def test_array(self, log: imagelog.ImageLog, run_dir: Path, name: str) -> None:
        """A numpy array of the stored shape, even a strided view of a padded one."""
        fmt = pixfmt.parse(name)
        frame = delivered(fmt)
        wide = np.zeros((frame.shape[0], frame.shape[1] + 8, *frame.shape[2:]), frame.dtype)
        wide[:, : frame.shape[1]] = frame
        view = wide[:, : frame.shape[1]]
        log.log(view, pixel_format=name)
        log.flush()
        run, rec = only(run_dir)
        assert rec["image"]["stride"] == wide.strides[0]
        got = run.load(rec)
        expect = (
            frame
            if not fmt.pattern.startswith("BGR")
            else frame[:, :, [2, 1, 0, 3][: fmt.channels]]
        )
        np.testing.assert_array_equal(got, expect)

    @pytest.mark.parametrize("name", ["bayer_rggb8", "nv12", "i420"])
    def test_buffer_is_copied(self, log: imagelog.ImageLog, run_dir: Path, name: str) -> None:
        """The camera may reuse its buffer as soon as log() returns."""
        fmt = pixfmt.parse(name)
        frame = delivered(fmt)
        buf = bytearray(padded(frame, fmt, fmt.row_bytes(W) + 32))
        log.log(buf, size=(W, H), pixel_format=name, stride=fmt.row_bytes(W) + 32)
        buf[:] = bytes(len(buf))
        log.flush()
        run, rec = only(run_dir)
        np.testing.assert_array_equal(run.load(rec), frame)

    def test_unpadded_last_row(self, log: imagelog.ImageLog, run_dir: Path) -> None:
        """A buffer whose last row stops at the pixels (no trailing padding) is accepted."""
        fmt = pixfmt.parse("bayer_gbrg16")
        frame = delivered(fmt)
        data = padded(frame, fmt, 2 * W + 16)[:-16]
        log.log(data, size=(W, H), pixel_format="bayer_gbrg16", stride=2 * W + 16)
        log.flush()
        run, rec = only(run_dir)
        np.testing.assert_array_equal(run.load(rec), frame)

    def test_stride_with_a_raw_mode(self, log: imagelog.ImageLog, run_dir: Path) -> None:
        """stride= also works for raw bytes in a PIL mode (mode="RGB" is pixel_format="rgb8")."""
        rgb = np.ascontiguousarray(photo("coffee.png")[:H, :W])
        data = padded(rgb, pixfmt.parse("rgb8"), 3 * W + 32)
        log.log(data, size=(W, H), mode="RGB", stride=3 * W + 32)
        log.flush()
        run, rec = only(run_dir)
        assert rec["image"]["pixel_format"] == "rgb8"
        np.testing.assert_array_equal(run.load(rec), rgb)

    @pytest.mark.parametrize("name", ["bayer_grbg8", "yuyv", "uyvy", "nv21"])
    def test_file_holds_the_planes(self, run_dir: Path, name: str) -> None:
        """The file holds the planes side by side (image.layout "planes"), verified at write."""
        fmt = pixfmt.parse(name)
        frame = delivered(fmt)
        with imagelog.open(run_dir, strict=True, verify="all") as log:
            log.log(frame, pixel_format=name)
        assert log.stats()["verified"] == 1 and log.stats()["verify_failed"] == 0
        run, rec = only(run_dir)
        assert rec["image"]["layout"] == "planes"
        decoded = imagelog.codecs.get(rec["image"]["format"]).decode(run.read_bytes(rec))
        if fmt.kind == "bayer":  # top-left tile: the sites at (0, 0)
            np.testing.assert_array_equal(decoded[: H // 2, : W // 2], frame[0::2, 0::2])
        elif fmt.kind == "yuv422":  # left half: the Y plane
            np.testing.assert_array_equal(decoded[:, :W], frame[:, :, 0 if name == "yuyv" else 1])
        else:  # NV21 as I420: V follows U
            np.testing.assert_array_equal(
                decoded[H:].reshape(-1)[: W * H // 4], frame[H:].reshape(-1)[1::2]
            )
        np.testing.assert_array_equal(run.load(rec), frame)

    def test_odd_sized_mosaic(self, log: imagelog.ImageLog, run_dir: Path) -> None:
        """A mosaic of odd size is stored as delivered (no tiling) and comes back exactly."""
        frame = np.ascontiguousarray(delivered(pixfmt.parse("bayer_rggb16"))[:-1, :-1])
        log.log(frame, pixel_format="bayer_rggb16")
        log.flush()
        run, rec = only(run_dir)
        assert "layout" not in rec["image"]
        np.testing.assert_array_equal(run.load(rec), frame)

    def test_bayer_is_stored_smaller_than_its_rgb(self, run_dir: Path) -> None:
        """One plane instead of three: the stored mosaic is smaller than the demosaiced RGB."""
        rgb = np.ascontiguousarray(photo("astronaut.png")[:256, :256])
        with imagelog.open(run_dir, strict=True) as log:
            log.log(pixfmt.from_rgb(rgb, "bayer_rggb8"), pixel_format="bayer_rggb8", source="raw")
            log.log(pixfmt.to_rgb(pixfmt.from_rgb(rgb, "bayer_rggb8"), "bayer_rggb8"), source="rgb")
        run = imagelog.read(run_dir)
        (raw,) = run.records(source="raw")
        (full,) = run.records(source="rgb")
        assert raw["file"]["size"] < full["file"]["size"]


def psnr(a: Array, b: Array, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(peak**2 / mse)


def bt601(y: Array, u: Array, v: Array) -> Array:
    """Reference YUV -> RGB (ITU-R BT.601, limited range), chroma already at full size."""
    c, d, e = y.astype(np.float64) - 16, u.astype(np.float64) - 128, v.astype(np.float64) - 128
    rgb = np.stack(
        [1.164 * c + 1.596 * e, 1.164 * c - 0.392 * d - 0.813 * e, 1.164 * c + 2.017 * d], axis=2
    )
    return np.clip(np.rint(rgb), 0, 255)


class TestToRgb:
    """``pixfmt.to_rgb`` (OpenCV cvtColor) and ``Run.load(rec, convert="rgb")``."""

    @pytest.mark.parametrize("name", BAYER)
    def test_demosaic_restores_the_photo(self, name: str) -> None:
        """A mosaic of a photograph demosaics back close to it; any other pattern does not."""
        fmt = pixfmt.parse(name)
        rgb = scene(fmt, 256, 256, "astronaut.png")
        peak = float(2**fmt.bit_depth - 1)
        got = pixfmt.to_rgb(pixfmt.from_rgb(rgb, fmt), fmt)
        assert got.dtype == rgb.dtype and got.shape == rgb.shape
        inner = (slice(2, -2), slice(2, -2))
        assert psnr(got[inner], rgb[inner], peak) > 28
        for other in ("rggb", "bggr", "gbrg", "grbg"):
            if other != fmt.pattern.lower():
                wrong = pixfmt.to_rgb(pixfmt.from_rgb(rgb, fmt), f"bayer_{other}{fmt.bit_depth}")
                assert psnr(wrong[inner], rgb[inner], peak) < 22

    @pytest.mark.parametrize("name", YUV)
    def test_yuv_matches_bt601_within_one_level(self, name: str) -> None:
        """YUV converts as ITU-R BT.601 limited range does, within 1 level, chroma upsampled
        by repetition; and lands close to the photo it was made from."""
        fmt = pixfmt.parse(name)
        rgb = scene(fmt, 128, 96, "coffee.png")
        stored = pixfmt.from_rgb(rgb, fmt)
        got = pixfmt.to_rgb(stored, fmt)
        h, w = 96, 128
        if fmt.kind == "yuv422":
            luma, chroma = (0, 1) if fmt.pattern == "YUYV" else (1, 0)
            y = stored[:, :, luma]
            u = np.repeat(stored[:, 0::2, chroma], 2, axis=1)
            v = np.repeat(stored[:, 1::2, chroma], 2, axis=1)
        else:
            y = stored[:h]
            if fmt.kind == "yuv420sp":
                uv = stored[h:].reshape(h // 2, w // 2, 2)
                u, v = (
                    (uv[:, :, 0], uv[:, :, 1])
                    if fmt.pattern == "NV12"
                    else (uv[:, :, 1], uv[:, :, 0])
                )
            else:
                flat = stored[h:].reshape(-1)
                u = flat[: h * w // 4].reshape(h // 2, w // 2)
                v = flat[h * w // 4 :].reshape(h // 2, w // 2)
            u = np.repeat(np.repeat(u, 2, axis=0), 2, axis=1)
            v = np.repeat(np.repeat(v, 2, axis=0), 2, axis=1)
        ref = bt601(y, u, v)
        assert np.abs(got.astype(np.float64) - ref).max() <= 1
        assert psnr(got, rgb, 255) > 30

    def test_mono_and_rgba(self) -> None:
        """Gray repeats into three channels; RGBA loses alpha; BGR is reordered."""
        gray = photo("camera.png")[:8, :8, 0]
        np.testing.assert_array_equal(pixfmt.to_rgb(gray, "mono8")[:, :, 2], gray)
        rgb = np.ascontiguousarray(photo("coffee.png")[:8, :8])
        np.testing.assert_array_equal(pixfmt.to_rgb(pixfmt.from_rgb(rgb, "bgra8"), "bgra8"), rgb)
        np.testing.assert_array_equal(pixfmt.to_rgb(pixfmt.from_rgb(rgb, "rgba8"), "rgba8"), rgb)

    def test_as_uint8(self) -> None:
        """as_uint8 scales by the bit depth: a 12-bit demosaic >> 4, float 0..1 to 0..255."""
        fmt = pixfmt.parse("bayer_grbg12")
        mosaic = pixfmt.from_rgb(scene(fmt), fmt)
        full = pixfmt.to_rgb(mosaic, fmt)
        np.testing.assert_array_equal(
            pixfmt.to_rgb(mosaic, fmt, as_uint8=True), (full >> 4).astype(np.uint8)
        )
        gray = np.array([[0.0, 0.5], [1.0, 2.0]], np.float32)
        assert pixfmt.to_rgb(gray, "32fc1", as_uint8=True)[:, :, 0].tolist() == [
            [0, 128],
            [255, 255],
        ]

    def test_to_rgb_checks_the_array(self) -> None:
        """A mosaic of the wrong dtype or shape is refused with the reason."""
        with pytest.raises(InvalidFrame, match="uint16"):
            pixfmt.to_rgb(np.zeros((4, 4), np.uint8), "bayer_rggb16")
        with pytest.raises(InvalidFrame, match="3x3"):
            pixfmt.to_rgb(np.zeros((2, 2), np.uint8), "bayer_rggb8")
        with pytest.raises(InvalidFrame, match=r"\(H\*3/2\)xW"):
            pixfmt.to_rgb(np.zeros((5, 4), np.uint8), "nv12")

    @pytest.mark.parametrize(
        "name", ["bayer_bggr8", "bayer_grbg16", "yuyv", "nv21", "i420", "mono16", "rgb8"]
    )
    def test_load_convert(self, log: imagelog.ImageLog, run_dir: Path, name: str) -> None:
        """load(rec, convert="rgb") is to_rgb of the stored frame."""
        fmt = pixfmt.parse(name)
        log.log(delivered(fmt), pixel_format=name)
        log.flush()
        run, rec = only(run_dir)
        got = run.load(rec, convert="rgb")
        assert got.shape == (H, W, 3)
        np.testing.assert_array_equal(got, pixfmt.to_rgb(run.load(rec), name))

    def test_load_convert_without_pixel_format(self, log: imagelog.ImageLog, run_dir: Path) -> None:
        """Frames logged before pixel formats existed convert too: gray is repeated."""
        gray = np.ascontiguousarray(photo("camera.png")[:H, :W, 0])
        log.log(gray)
        log.flush()
        run, rec = only(run_dir)
        np.testing.assert_array_equal(run.load(rec, convert="rgb"), np.stack([gray] * 3, axis=2))
        with pytest.raises(ValueError, match="convert"):
            run.load(rec, convert="bgr")


class TestCallerErrors:
    """Bad buffers raise in the caller's thread, name the problem, and log nothing."""

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"data": bytes(W * H - 1), "pixel_format": "bayer_rggb8"}, InvalidFrame, rf"needs {W * H} bytes .*got {W * H - 1}"),
            ({"data": bytes(W * H * 2), "pixel_format": "bayer_rggb8", "stride": W - 2}, InvalidFrame, "shorter than one row"),
            ({"data": bytes(W * H * 2), "pixel_format": "bayer_rggb16", "stride": 2 * W + 1}, InvalidFrame, "whole number"),
            ({"data": bytes(W * H * 3 // 2), "pixel_format": "nv12", "size": (W, H - 1)}, InvalidFrame, "even"),
            ({"data": bytes(W * H * 2), "pixel_format": "yuyv", "size": (W - 1, H)}, InvalidFrame, "width must be even"),
            ({"data": bytes(W * H * 3 // 2), "pixel_format": "nv12", "stride": W + 16}, InvalidFrame, r"Y.*|rows x"),
            ({"data": bytes(W * H), "pixel_format": "bayer_xyz8"}, InvalidFrame, "unknown pixel_format"),
            ({"data": bytes(W * H), "pixel_format": "bayer_rggb8", "size": None}, InvalidFrame, "need size"),
            ({"data": np.zeros((H, W), np.uint16), "pixel_format": "bayer_rggb8", "size": None}, UnsupportedInput, "uint8 arrays, got uint16"),
            ({"data": np.zeros((H, W, 3), np.uint8), "pixel_format": "bayer_rggb8", "size": None}, InvalidFrame, "shaped H x W"),
            ({"data": np.zeros((H + 1, W), np.uint8), "pixel_format": "i420", "size": None}, InvalidFrame, r"H\*3/2"),
            ({"data": np.zeros((H, W), np.uint8), "pixel_format": "bayer_rggb8", "size": None, "stride": W}, InvalidFrame, "size="),
            ({"data": bytes(W * H), "pixel_format": "mono8", "channel_order": "BGR"}, InvalidFrame, "channel order"),
            ({"data": [1, 2, 3], "pixel_format": "mono8"}, UnsupportedInput, "bytes"),
            ({"data": bytes(W * H), "pixel_format": "bayer_rggb8", "format": "jpeg"}, FormatMismatch, "lossless"),
        ],
    )  # fmt: skip
    def test_rejected(
        self,
        log: imagelog.ImageLog,
        run_dir: Path,
        kwargs: dict[str, Any],
        error: type[Exception],
        match: str,
    ) -> None:
        """The error names the problem; the log stays usable and holds only the good frame."""
        kw = dict(kwargs)
        data = kw.pop("data")
        kw.setdefault("size", (W, H))
        with pytest.raises(error, match=match):
            log.log(data, **kw)
        log.log(bytes(W * H), size=(W, H), pixel_format="mono8")
        log.flush()
        _, rec = only(run_dir)
        assert rec["image"]["pixel_format"] == "mono8"

    def test_preset_falls_back_to_lossless(self, run_dir: Path) -> None:
        """A lossy preset (preview = JPEG) stores a mosaic losslessly instead of smearing it."""
        frame = delivered(pixfmt.parse("bayer_rggb8"))
        with imagelog.open(run_dir, format="preview", strict=True) as log:
            log.log(frame, pixel_format="bayer_rggb8")
            log.log(np.ascontiguousarray(photo("coffee.png")[:H, :W]))
        recs = list(imagelog.read(run_dir).records())
        assert [r["image"]["lossless"] for r in recs] == [True, False]
        np.testing.assert_array_equal(imagelog.read(run_dir).load(recs[0]), frame)


class TestEncodingChecks:
    """``check_encoding=``: suspect frames are counted and written as index events."""

    def test_checks_in_the_background(self, run_dir: Path) -> None:
        """A mis-declared Bayer pattern and a blank frame are flagged; a good frame is not."""
        rgb = np.ascontiguousarray(photo("coffee.png")[:256, :256])
        mosaic = pixfmt.from_rgb(rgb, "bayer_rggb8")
        with imagelog.open(run_dir, strict=True, check_encoding="all") as log:
            good = log.log(mosaic, pixel_format="bayer_rggb8")
            wrong = log.log(mosaic, pixel_format="bayer_gbrg8")
            blank = log.log(np.zeros((64, 64), np.uint8))
        stats = log.stats()
        assert stats["encoding_checked"] == 3
        assert stats["encoding_warnings_by_kind"] == {"bayer_pattern": 1, "constant": 1}
        assert stats["encoding_warnings"] == 2
        run = imagelog.read(run_dir)
        events = [
            r
            for r in run.records(include_events=True)
            if r["event"]["action"] == "encoding_warning"
        ]
        flagged = {e["imagelog"]["check"]["image_id"]: e["event"]["reason"] for e in events}
        assert flagged == {wrong: "bayer_pattern", blank: "constant"}
        assert good not in flagged
        assert all(e["log"]["level"] == "warning" and e["message"] for e in events)
        assert len(list(run.records())) == 3  # the frames themselves are stored as logged
        assert run.get(wrong)["event"]["action"] == "logged"
        report = audit.verify(run, sample=1.0)  # decodes every frame at its pixel format
        assert not report.findings
        from imagelog.cli import summarise

        assert summarise(run)["encoding_warnings_by_kind"] == {"bayer_pattern": 1, "constant": 1}

    def test_warning_fields_have_ecs_types(self, run_dir: Path) -> None:
        """The event's ECS-named fields carry ECS types (its own live under imagelog.check)."""
        import json

        ecs = json.loads((Path(__file__).parent / "data" / "ecs_fields.json").read_text("utf-8"))
        with imagelog.open(run_dir, strict=True, check_encoding="all") as log:
            log.log(np.zeros((64, 64), np.uint8), source="cam1")
        (event,) = [
            r
            for r in imagelog.read(run_dir).records(include_events=True)
            if r["event"]["action"] == "encoding_warning"
        ]
        checked = 0
        for top in ("event", "log", "host", "process"):
            for key, value in event[top].items():
                spec = ecs.get(f"{top}.{key}")
                assert spec is not None, f"{top}.{key} is not an ECS field"
                checked += 1
                if spec["type"] == "long":
                    assert isinstance(value, int), key
                elif spec["type"] == "date":
                    assert isinstance(value, str) and value.endswith("Z"), key
                else:
                    assert isinstance(value, str), key
        assert checked >= 9
        assert event["imagelog"]["check"]["source"] == "cam1"

    def test_bad_setting(self, run_dir: Path) -> None:
        """check_encoding takes what verify takes; anything else fails at open()."""
        with pytest.raises(imagelog.InvalidSetting, match="check_encoding"):
            imagelog.open(run_dir, check_encoding="always")

    def test_off_by_default(self, run_dir: Path) -> None:
        """Without check_encoding nothing is checked."""
        with imagelog.open(run_dir, strict=True) as log:
            log.log(np.zeros((64, 64), np.uint8))
        assert log.stats()["encoding_checked"] == 0
        assert log.stats()["encoding_warnings"] == 0

    @pytest.mark.parametrize(
        ("frame", "name", "kind"),
        [
            (lambda rgb: np.ascontiguousarray(rgb[:, :, ::-1]), None, "channel_order"),
            (lambda rgb: pixfmt.from_rgb(rgb, "bayer_rggb8"), "bayer_bggr8", "channel_order"),
            (lambda rgb: pixfmt.from_rgb(rgb, "bayer_rggb8"), "bayer_grbg8", "bayer_pattern"),
            (lambda rgb: pixfmt.from_rgb(rgb, "nv12"), "nv21", "channel_order"),
            (lambda rgb: rgb.astype(np.uint16)[:, :, 0] * 257, "mono12", "out_of_range"),
            (lambda rgb: np.full(rgb.shape[:2], 255, np.uint8), "mono8", "constant"),
            (lambda rgb: np.minimum(rgb.astype(np.uint16) * 4, 255).astype(np.uint8), None, "saturated"),
        ],
    )  # fmt: skip
    def test_catches(self, frame: Any, name: str | None, kind: str) -> None:
        """Each kind of mis-declaration is caught on a photograph it does not flag as declared."""
        rgb = np.ascontiguousarray(photo("chelsea.png")[:256, :384])
        assert check_frame(rgb) == []
        assert kind in [f.kind for f in check_frame(frame(rgb), name)]

    @pytest.mark.parametrize("name", ["bayer_rggb8", "mono8", "rgb8", "yuyv", "nv12"])
    @pytest.mark.parametrize("off", [2, 6, 64])
    def test_wrong_stride_is_sheared(self, name: str, off: int) -> None:
        """A buffer read with a stride a few bytes off looks sheared; read right, it does not."""
        fmt = pixfmt.parse(name)
        w, h = 384, 256
        frame = pixfmt.from_rgb(np.ascontiguousarray(photo("astronaut.png")[:h, :w]), fmt)
        true_stride = fmt.row_bytes(w) + 64
        data = padded(frame, fmt, true_stride)
        views, _ = pixfmt.plane_views(data, fmt, w, h, true_stride)
        assert (
            check_frame(
                np.concatenate([v.reshape(v.shape[0], -1) for v in views]).reshape(frame.shape), fmt
            )
            == []
        )
        wrong = true_stride - off
        size = sum(rows * pitch for rows, _, pitch in fmt.planes(w, h, wrong))
        views, _ = pixfmt.plane_views(data[:size], fmt, w, h, wrong)
        got = np.concatenate([v.reshape(-1) for v in views]).reshape(frame.shape)
        assert "sheared" in [f.kind for f in check_frame(got, fmt)]


def test_handler_passes_the_pixel_format(run_dir: Path) -> None:
    """logging.Handler: extra={"image": buf, "size": ..., "pixel_format": ..., "stride": ...}."""
    import logging

    fmt = pixfmt.parse("bayer_bggr8")
    frame = delivered(fmt)
    with imagelog.open(run_dir, strict=True) as log:
        logger = logging.getLogger("test_pixfmt.handler")
        handler = imagelog.Handler(log)
        logger.addHandler(handler)
        try:
            extra = {
                "image": padded(frame, fmt, W + 32),
                "size": (W, H),
                "pixel_format": "bayer_bggr8",
                "stride": W + 32,
            }
            logger.warning("raw frame", extra=extra)
        finally:
            logger.removeHandler(handler)
    run, rec = only(run_dir)
    assert rec["image"]["pixel_format"] == "bayer_bggr8" and rec["message"] == "raw frame"
    np.testing.assert_array_equal(run.load(rec), frame)


@given(
    name=st.sampled_from(EVERY),
    w=st.integers(1, 40),
    h=st.integers(1, 30),
    pad=st.integers(0, 9),
    x=st.integers(0, 200),
)
def test_any_size_and_padding(name: str, w: int, h: int, pad: int, x: int) -> None:
    """Any size the format allows, any padding: the copy (and the file's plane layout, there
    and back) is the frame without its padding."""
    fmt = pixfmt.parse(name)
    if fmt.kind != "bayer" and fmt.kind != "mono" and fmt.kind != "rgb":
        w, h = w + w % 2, h + h % 2  # chroma subsampling needs even sizes
    rgb = np.ascontiguousarray(photo("astronaut.png")[x : x + h, x : x + w])
    if fmt.dtype == "float32":
        frame = rgb[:, :, 0].astype(np.float32) / 255
    else:
        frame = pixfmt.from_rgb(rgb if fmt.dtype == "uint8" else rgb.astype(np.uint16) * 257, fmt)
    stride = fmt.row_bytes(w) + pad * fmt.itemsize * (2 if fmt.kind == "yuv420p" else 1)
    f = normalise(padded(frame, fmt, stride), size=(w, h), pixel_format=name, stride=stride)
    assert (f.width, f.height, f.stride, f.bit_depth) == (w, h, stride, fmt.bit_depth)
    assert f.pixels is not None
    if fmt.pattern.startswith("BGR"):
        frame = frame[:, :, [2, 1, 0, 3][: fmt.channels]]
    stored, layout = pixfmt.to_stored(f.pixels, f.pixel_format or name)
    back = pixfmt.from_stored(stored, f.pixel_format or name, layout, w, h)
    np.testing.assert_array_equal(back, frame)

"""The codec registry: declarations, exact round trips, refusals, and the record inside each file."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pytest
from PIL import Image

import imagelog
from imagelog import cli, codecs
from imagelog.codecs.base import as_logged, record_from_xmp, xmp_packet
from imagelog.codecs.jxl import add_box_before_codestream, to_container
from imagelog.codecs.webp import add_xmp, riff_chunks
from imagelog.frames import SUPPORTED_DTYPES

from .conftest import require

LAYOUTS: dict[str, tuple[tuple[int, ...], str]] = {
    "gray8": ((37, 53), "uint8"),
    "rgb8": ((37, 53, 3), "uint8"),
    "rgba8": ((37, 53, 4), "uint8"),
    "gray16": ((37, 53), "uint16"),
    "rgb16": ((37, 53, 3), "uint16"),
    "float32": ((37, 53), "float32"),
    "bool": ((37, 53), "bool"),
}


def make_frame(layout: str, rgb: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A camera-like frame of the layout (odd width and height), from the shared RGB fixture."""
    shape, dtype = LAYOUTS[layout]
    base = rgb[: shape[0], : shape[1]]
    if dtype == "bool":
        return np.ascontiguousarray(base[..., 0] > 128)
    if dtype == "float32":
        return np.ascontiguousarray(base[..., 0].astype(np.float32) / 255.0 - 0.25)
    if len(shape) == 2:
        arr = base[..., 1]
    elif shape[2] == 4:
        arr = np.dstack([base, 255 - base[..., :1]])  # a real, varying alpha plane
    else:
        arr = base
    if dtype == "uint16":
        arr = arr.astype(np.uint16) * 257 + 3
    return np.ascontiguousarray(arr)


def _cases(*, lossless_only: bool = False) -> list[tuple[str, str]]:
    out = []
    for name in codecs.names():
        codec = codecs.get(name)
        if lossless_only and not codec.is_lossless(codec.params({})):
            continue
        for layout, (shape, dtype) in LAYOUTS.items():
            channels = 1 if len(shape) == 2 else shape[2]
            if dtype in codec.dtypes and channels in codec.channels:
                out.append((name, layout))
    return out


class TestRegistry:
    def test_every_codec_declares_what_it_takes(self) -> None:
        """Each codec declares name, extension, lossless, dtypes, channels, GIL and defaults."""
        assert {"avif", "jpeg", "jxl", "npy", "png", "qoi", "tiff", "webp"} <= set(codecs.names())
        for name in codecs.names():
            d = codecs.get(name).describe()
            assert d["name"] == name
            assert d["extension"]
            assert isinstance(d["lossless"], bool)
            assert set(d["dtypes"]) <= set(SUPPORTED_DTYPES)
            assert set(d["channels"]) <= {1, 3, 4}
            assert isinstance(d["releases_gil"], bool)
            assert isinstance(d["defaults"], dict)

    def test_presets_hold_only_codecs_that_take_the_dtype(self) -> None:
        """Every preset entry names a registered codec that accepts that dtype."""
        for table in codecs.PRESETS.values():
            for dtype, spec in table.items():
                codec, params = codecs.resolve(spec, dtype=dtype, channels=1)
                assert dtype in codec.dtypes, (spec, dtype)
                assert codec.is_lossless(params) or dtype == "uint8", (spec, dtype)

    def test_default_formats_release_the_gil(self) -> None:
        """No preset picks a codec that holds the GIL (it would stall the caller's thread)."""
        for table in codecs.PRESETS.values():
            for dtype, spec in table.items():
                assert codecs.resolve(spec, dtype=dtype, channels=1)[0].releases_gil, spec

    @pytest.mark.parametrize(("name", "layout"), _cases())
    def test_sniff_names_the_codec_of_its_output(
        self, rgb: np.ndarray[Any, Any], name: str, layout: str
    ) -> None:
        """codecs.sniff recognises every codec's output by its first bytes."""
        codec = codecs.get(name)
        data = codec.encode(make_frame(layout, rgb), codec.params({}))
        sniffed = codecs.sniff(data)
        assert sniffed is not None
        assert sniffed.name == name

    def test_sniff_rejects_other_bytes(self) -> None:
        """Bytes that no codec wrote are not claimed."""
        assert codecs.sniff(b"hello world, not an image") is None


class TestRoundTrip:
    @pytest.mark.parametrize(("name", "layout"), _cases(lossless_only=True))
    def test_lossless_codecs_are_exact(
        self, rgb: np.ndarray[Any, Any], name: str, layout: str
    ) -> None:
        """Every lossless codec gives back exactly each dtype and layout it declares."""
        codec = codecs.get(name)
        params = codec.params({})
        frame = make_frame(layout, rgb)
        out = as_logged(codec.decode(codec.encode(frame, params)), frame.dtype.name,
                        1 if frame.ndim == 2 else frame.shape[2])  # fmt: skip
        assert out.dtype == frame.dtype
        assert np.array_equal(out, frame)

    @pytest.mark.parametrize("layout", ["gray8", "rgb8", "rgba8", "gray16", "rgb16"])
    @pytest.mark.parametrize("encoder", ["imagecodecs", "pyjpegxl"])
    def test_jxl_fast_lossless_encoders_agree(
        self, rgb: np.ndarray[Any, Any], encoder: str, layout: str
    ) -> None:
        """Both JPEG XL effort-1 encoders give codestreams that decode exactly, with our record."""
        from imagelog.codecs.jxl import fast_lossless_module

        require(encoder != "pyjpegxl" or fast_lossless_module() is not None, "pyjpegxl missing")
        codec = codecs.get("jxl")
        frame = make_frame(layout, rgb)
        data, embedded = codec.encode_with_record(frame, codec.params({"encoder": encoder}), "{}")
        assert embedded
        assert codec.extract(data) == "{}"
        out = as_logged(
            codec.decode(data), frame.dtype.name, 1 if frame.ndim == 2 else frame.shape[2]
        )
        assert out.dtype == frame.dtype
        assert np.array_equal(out, frame)

    def test_jxl_refuses_an_unknown_encoder(self) -> None:
        """An encoder name JPEG XL does not know is an error naming the ones it does."""
        with pytest.raises(imagelog.FormatMismatch, match="auto, imagecodecs, pyjpegxl"):
            codecs.get("jxl").params({"encoder": "libjxl-git"})

    @pytest.mark.parametrize("compression", ["none", "zstd", "lz4"])
    def test_npy_keeps_every_float_bit(self, compression: str) -> None:
        """npy stores float32 bit for bit: NaN, infinities, -0.0, subnormals."""
        vals = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38, 0.1], np.float32)
        frame = np.resize(vals, (9, 11))
        codec = codecs.get("npy")
        data = codec.encode(frame, codec.params({"compression": compression}))
        out = codec.decode(data)
        assert out.dtype == np.float32
        assert out.tobytes() == frame.tobytes()

    def test_npy_compressed_files_need_no_imagelog(self) -> None:
        """A zstd'd .npy is the zstd frame of a plain .npy: decompress, then numpy.load."""
        frame = np.arange(60, dtype=np.uint16).reshape(6, 10)
        codec = codecs.get("npy")
        data = codec.encode(frame, codec.params({}))
        assert data[:4] == b"\x28\xb5\x2f\xfd"
        assert np.array_equal(np.load(io.BytesIO(imagecodecs.zstd_decode(data))), frame)

    def test_npy_refuses_an_unknown_compression(self) -> None:
        """A compression npy does not offer is an error naming the ones it does."""
        with pytest.raises(imagelog.FormatMismatch, match="none, zstd, lz4"):
            codecs.get("npy").params({"compression": "gzip"})


class TestRefusals:
    @pytest.mark.parametrize(
        ("spec", "shape", "dtype"),
        [
            ("jpeg", (8, 8), np.uint16),
            ("jpeg", (8, 8), np.float32),
            ("jpeg", (8, 8, 4), np.uint8),
            ("avif", (8, 8), np.uint16),
            ("webp:lossless=false", (8, 8, 3), np.uint16),
            ("qoi", (8, 8), np.uint8),
            ("jxl", (8, 8), np.float32),
        ],
    )
    def test_formats_refuse_what_they_would_mangle(
        self, run_dir: Path, spec: str, shape: tuple[int, ...], dtype: Any
    ) -> None:
        """A format that cannot hold a frame exactly raises FormatMismatch naming an alternative."""
        with imagelog.open(run_dir) as log, pytest.raises(imagelog.FormatMismatch, match="use '"):
            log.log(np.zeros(shape, dtype), format=spec)
        assert log.stats()["written"] == 0


class TestEmbeddedRecord:
    @pytest.mark.parametrize(
        ("spec", "embedded"),
        [
            ("png", True),
            ("jpeg", True),
            ("webp", True),
            ("webp:lossless=false", True),
            ("tiff", True),
            ("jxl", True),
            ("jxl:distance=1.0", True),
            ("qoi", False),
            ("npy", False),
            ("avif", False),
        ],
    )
    def test_show_reads_the_record_of_every_format(
        self,
        run_dir: Path,
        tmp_path: Path,
        rgb: np.ndarray[Any, Any],
        capsys: pytest.CaptureFixture[str],
        spec: str,
        embedded: bool,
    ) -> None:
        """`imagelog show FILE` prints the record: from inside the file, or from its sidecar."""
        with imagelog.open(run_dir) as log:
            rid = log.log(rgb[:40, :50], source="cam7", format=spec, note="hello <&>")
        run = imagelog.read(run_dir)
        rec = run.get(rid)
        image = run.path(rec)
        assert ("sidecar" not in rec["imagelog"]) is embedded
        assert image.with_name(image.name + ".json").exists() is not embedded
        if embedded:  # the file alone, copied away from its sidecar and index, still carries it
            alone = tmp_path / "alone" / image.name
            alone.parent.mkdir()
            shutil.copy(image, alone)
            image = alone
        assert cli.main(["show", str(image)]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["image"]["id"] == rid
        assert shown["image"]["source"] == "cam7"
        assert shown["meta"] == {"note": "hello <&>"}

    def test_show_says_when_a_file_has_no_record(
        self, tmp_path: Path, rgb: np.ndarray[Any, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An ordinary image (not written by imagelog) is reported, exit status 1."""
        path = tmp_path / "plain.png"
        Image.fromarray(rgb).save(path)
        assert cli.main(["show", str(path)]) == 1
        assert "carries no imagelog record" in capsys.readouterr().err


def _webp(frame: np.ndarray[Any, Any], lossless: bool) -> bytes:
    level = 100 if lossless else 80
    return bytes(imagecodecs.webp_encode(frame, level=level, lossless=lossless, method=0))


class TestWebPExtended:
    @pytest.mark.parametrize(
        ("channels", "lossless", "before"),
        [
            (3, True, [b"VP8L"]),
            (3, False, [b"VP8 "]),
            (4, True, [b"VP8L"]),
            (4, False, [b"VP8X", b"ALPH", b"VP8 "]),
        ],
    )
    def test_xmp_makes_a_valid_extended_file(
        self, rgb: np.ndarray[Any, Any], channels: int, lossless: bool, before: list[bytes]
    ) -> None:
        """VP8/VP8L become VP8X + image + XMP with the right canvas and flags; decoders agree."""
        frame = make_frame("rgba8" if channels == 4 else "rgb8", rgb)
        data = _webp(frame, lossless)
        assert [c for c, _ in riff_chunks(data)] == before
        out = add_xmp(data, xmp_packet('{"k": "<v>"}'))
        chunks = list(riff_chunks(out))
        assert [c for c, _ in chunks] == ([*before, b"XMP "] if before[0] == b"VP8X"
                                          else [b"VP8X", *before, b"XMP "])  # fmt: skip
        vp8x = chunks[0][1]
        flags = vp8x[0]
        assert flags & 0x04  # XMP
        assert bool(flags & 0x10) is (channels == 4)  # alpha
        width = int.from_bytes(vp8x[4:7], "little") + 1
        height = int.from_bytes(vp8x[7:10], "little") + 1
        assert (width, height) == (frame.shape[1], frame.shape[0])
        assert struct.unpack("<I", out[4:8])[0] == len(out) - 8  # RIFF size
        assert record_from_xmp(out) == '{"k": "<v>"}'
        expected = np.asarray(imagecodecs.webp_decode(data))
        assert np.array_equal(imagecodecs.webp_decode(out), expected)
        with Image.open(io.BytesIO(out)) as im:
            assert im.size == (frame.shape[1], frame.shape[0])
            assert np.array_equal(np.asarray(im.convert(im.mode))[..., : expected.shape[2]],
                                  expected)  # fmt: skip
            assert b"imagelog:record" in im.info["xmp"]


@pytest.fixture(name="pillow_registry")
def _pillow_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pillow's plugin tables put back after the test: a plugin registered here must not change
    how other tests' Image.open() reads JPEG XL bytes."""
    if importlib.util.find_spec("pyjpegxl") is not None:  # it registers once per process
        import pyjpegxl.pillow

        monkeypatch.setattr(pyjpegxl.pillow, "_registered", False, raising=False)
    tables = {name: getattr(Image, name) for name in
              ("ID", "OPEN", "MIME", "SAVE", "SAVE_ALL", "EXTENSION", "DECODERS", "ENCODERS")}  # fmt: skip
    saved = {name: table.copy() for name, table in tables.items()}
    yield
    for name, table in tables.items():
        table.clear()
        table.update(saved[name]) if isinstance(table, dict) else table.extend(saved[name])


def _pillow_jxl_plugin() -> bool:
    """Register a Pillow JPEG XL plugin if one is installed; whether one is."""
    if importlib.util.find_spec("pyjpegxl") is not None:
        import pyjpegxl.pillow

        pyjpegxl.pillow.register()
        return True
    if importlib.util.find_spec("pillow_jxl") is not None:
        import pillow_jxl  # noqa: F401

        return True
    return False


class TestJpegXLContainer:
    @pytest.mark.parametrize("layout", ["rgb8", "gray16"])
    @pytest.mark.usefixtures("pillow_registry")
    def test_container_with_xml_box_still_decodes(
        self, rgb: np.ndarray[Any, Any], layout: str
    ) -> None:
        """The container with our XMP box decodes to the logged pixels (imagecodecs, Pillow)."""
        codec = codecs.get("jxl")
        frame = make_frame(layout, rgb)
        boxed, embedded = codec.encode_with_record(frame, codec.params({}), '{"id": 1}')
        assert embedded
        assert boxed[4:8] == b"JXL "
        assert (b"jxll" in boxed[:64]) is (frame.dtype == np.uint16)  # level 10 for > 12 bits
        assert np.array_equal(imagecodecs.jpegxl_decode(boxed), frame)
        assert codec.extract(boxed) == '{"id": 1}'
        if _pillow_jxl_plugin():  # Pillow has no JPEG XL support of its own
            with Image.open(io.BytesIO(boxed)) as im:
                assert im.size == (frame.shape[1], frame.shape[0])
                if frame.dtype == np.uint8:  # pyjpegxl's plugin reads 16-bit gray as 8-bit "L"
                    assert np.array_equal(np.asarray(im), frame)

    def test_box_goes_before_the_codestream_of_a_container(self) -> None:
        """A container input keeps its boxes; the xml box lands before jxlc."""
        codestream = bytes(imagecodecs.jpegxl_encode(np.zeros((8, 8), np.uint8), lossless=True))
        container = to_container(codestream, b"<x/>", level=10)
        out = add_box_before_codestream(container, b"\x00\x00\x00\x0bxml abc")
        assert out is not None
        assert out.index(b"xml abc") < out.index(b"jxlc")
        assert out.index(b"jxll") < out.index(b"xml abc")
        assert np.array_equal(imagecodecs.jpegxl_decode(out), np.zeros((8, 8), np.uint8))

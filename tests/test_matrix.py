"""The input matrix: every input kind x dtype x layout x format either raises in the caller's
thread, naming the problem, or ends as exactly one record that ``run.load()`` gives back as logged.

The oracle is the documented contract, written out below (the README's input list and preset
table, docs/formats.md's codec table), never the codec registry's own declarations: a codec that
declares something the documents do not promise, or fails at what they do, fails here.
Content is cropped from the bundled photos (odd sizes), logged many frames to one run folder per
format and read back once.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from typing import Any

import imagecodecs
import numpy as np
import pytest
from PIL import Image

import imagelog
from imagelog import codecs
from imagelog.samples import photo

# --- the contract ---------------------------------------------------------------------------------

#: README "Formats": preset -> dtype -> stored format; uint8 RGBA has its own column.
PRESETS: dict[str, dict[str, str]] = {
    "lossless": {"uint8": "jxl", "uint8 RGBA": "jxl", "uint16": "jxl", "float32": "tiff",
                 "bool": "png"},
    "compact": {"uint8": "jxl", "uint8 RGBA": "jxl", "uint16": "jxl", "float32": "tiff",
                "bool": "png"},
    "preview": {"uint8": "jpeg", "uint8 RGBA": "jxl", "uint16": "jxl", "float32": "tiff",
                "bool": "png"},
    "archive": {"uint8": "png", "uint8 RGBA": "png", "uint16": "png", "float32": "tiff",
                "bool": "png"},
}  # fmt: skip
#: README "Formats": frames under 256x256 pixels (all of this matrix's) where a preset differs.
SMALL_FRAMES: dict[str, dict[str, str]] = {"lossless": {"uint8": "tiff", "uint8 RGBA": "tiff"}}


@dataclasses.dataclass(frozen=True)
class Holds:
    """What a codec spec is documented to hold (docs/formats.md, "Formats, one by one")."""

    dtypes: frozenset[str]
    channels: frozenset[int]
    lossless: bool


U8 = frozenset({"uint8"})
ALL_CH = frozenset({1, 3, 4})
#: every registered codec at its defaults, and the documented lossy modes of the two-mode ones.
CODECS: dict[str, Holds] = {
    "jxl": Holds(frozenset({"uint8", "uint16"}), ALL_CH, True),
    "jxl:distance=1.0": Holds(frozenset({"uint8", "uint16"}), ALL_CH, False),
    "png": Holds(frozenset({"uint8", "uint16", "bool"}), ALL_CH, True),
    "jpeg": Holds(U8, frozenset({1, 3}), False),
    "webp": Holds(U8, frozenset({3, 4}), True),
    "webp:lossless=false": Holds(U8, frozenset({3, 4}), False),
    "tiff": Holds(frozenset({"uint8", "uint16", "float32"}), ALL_CH, True),
    "qoi": Holds(U8, frozenset({3, 4}), True),
    "npy": Holds(frozenset({"uint8", "uint16", "float32", "bool"}), ALL_CH, True),
    "avif": Holds(U8, ALL_CH, False),
}
FORMATS = [*PRESETS, *CODECS]
#: a lossy frame comes back within this PSNR of the logged one (uint8 content of the photos).
MIN_PSNR_DB = 30.0

# --- the inputs -----------------------------------------------------------------------------------

H, W = 37, 53  # odd sizes: no codec gets away with assuming even or block-aligned dimensions


def _crop(name: str, y: int, x: int) -> np.ndarray[Any, Any]:
    return np.ascontiguousarray(photo(name)[y : y + H, x : x + W])


RGB = _crop("astronaut.png", 100, 200)
OTHER = _crop("coffee.png", 150, 300)  # fills the low bits of 16-bit frames


def numpy_frame(dtype: str, layout: str) -> np.ndarray[Any, Any]:
    """A photo crop in ``dtype`` and ``layout`` (HxW, HxWx1, HxWx3, HxWx4 with a varying alpha)."""
    rgba = np.dstack([RGB, OTHER[..., 1:2]])
    arr = {"HxW": rgba[..., 1], "HxWx1": rgba[..., 1:2], "HxWx3": rgba[..., :3], "HxWx4": rgba}[
        layout
    ]
    if dtype == "uint16":
        low = np.dstack([OTHER, OTHER[..., :1]])[..., : arr.shape[2] if arr.ndim == 3 else 1]
        arr = arr.astype(np.uint16) * 256 + low.reshape(arr.shape)
    elif dtype == "float32":
        arr = arr.astype(np.float32) / 255.0 - 0.25
        arr.flat[7] = np.nan  # depth maps mark invalid pixels so; lossless keeps every bit
    elif dtype == "bool":
        arr = arr > 128
    return np.ascontiguousarray(arr)


@dataclasses.dataclass(frozen=True)
class Case:
    """One input: how to log it and what the contract says comes back."""

    name: str
    frame: object
    kwargs: dict[str, Any]
    #: the frame as the record must describe it (HxWx1 comes back HxW), or None if log() raises
    expected: np.ndarray[Any, Any] | None
    #: for encoded bytes: stored untouched, whatever the format
    encoded: bool = False
    #: for inputs refused whatever the format: (exception type, words in the message)
    refused: tuple[type[Exception], str] | None = None


def _as_record(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr


def _numpy_cases() -> Iterator[Case]:
    for dtype in ("uint8", "uint16", "float32", "bool"):
        for layout in ("HxW", "HxWx1", "HxWx3", "HxWx4"):
            arr = numpy_frame(dtype, layout)
            yield Case(f"numpy-{dtype}-{layout}", arr, {}, _as_record(arr))


#: PIL mode -> what the frame is stored as (README: "PIL images"; palettes and other colour
#: spaces are converted to RGB, or RGBA when they carry transparency).
PIL_MODES: dict[str, str | None] = {
    "1": "bool", "L": "uint8", "RGB": "uint8", "RGBA": "uint8", "I;16": "uint16",
    "I": "uint16", "F": "float32", "P": "RGB", "P+transparency": "RGBA", "PA": "RGBA",
    "LA": "RGBA", "RGBX": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
}  # fmt: skip


def _pil_image(mode: str) -> Image.Image:
    img = Image.fromarray(RGB)
    if mode == "1":
        return Image.fromarray(RGB[..., 0] > 128)
    if mode == "I;16":
        return Image.fromarray(numpy_frame("uint16", "HxW"))
    if mode == "I":
        return Image.fromarray(numpy_frame("uint16", "HxW").astype(np.int32))
    if mode == "F":
        return Image.fromarray(numpy_frame("float32", "HxW"))
    if mode == "RGBA":
        return Image.fromarray(numpy_frame("uint8", "HxWx4"))
    if mode == "P+transparency":
        pal = img.quantize(32)
        pal.info["transparency"] = 0
        return pal
    if mode == "P":
        return img.quantize(32)
    if mode == "PA":
        return img.quantize(32).convert("PA")
    return img.convert(mode)


def _pil_expected(mode: str, img: Image.Image) -> np.ndarray[Any, Any]:
    target = PIL_MODES[mode]
    if target in ("RGB", "RGBA"):
        return np.asarray(img.convert(target))
    if mode == "1":  # via "L": np.asarray of a "1" image holds 0xff for True
        return np.asarray(img.convert("L")) > 0
    return np.asarray(img).astype(target)


def _pil_cases() -> Iterator[Case]:
    for mode in PIL_MODES:
        img = _pil_image(mode)
        yield Case(f"pil-{mode}", img, {}, _pil_expected(mode, img))
    wide = Image.fromarray(np.full((H, W), 70_000, np.int32), "I")
    yield Case("pil-I-out-of-range", wide, {}, None,
               refused=(imagelog.UnsupportedInput, "outside 0..65535"))  # fmt: skip


#: raw mode -> (numpy frame it holds, what comes back): README "raw bytes with size=(w, h),
#: mode=...", the modes frames.py documents in its error message, little-endian.
def _raw_cases() -> Iterator[Case]:
    rgb, rgba = numpy_frame("uint8", "HxWx3"), numpy_frame("uint8", "HxWx4")
    modes: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {
        "L": (numpy_frame("uint8", "HxW"), numpy_frame("uint8", "HxW")),
        "RGB": (rgb, rgb),
        "RGBA": (rgba, rgba),
        "BGR": (np.ascontiguousarray(rgb[..., ::-1]), rgb),
        "BGRA": (np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]), rgba),
        "I;16": (numpy_frame("uint16", "HxW").astype("<u2"), numpy_frame("uint16", "HxW")),
        "F": (numpy_frame("float32", "HxW").astype("<f4"), numpy_frame("float32", "HxW")),
    }
    for mode, (held, back) in modes.items():
        data = held.tobytes()
        yield Case(f"raw-{mode}", data, {"size": (W, H), "mode": mode}, back)
        yield Case(f"rawframe-{mode}",
                   imagelog.RawFrame(data, size=(W, H), mode=mode), {}, back)  # fmt: skip
    for mode in ("1", "CMYK", "RGBX", "I;16B", "P"):
        yield Case(f"raw-{mode}", bytes(W * H * 4), {"size": (W, H), "mode": mode},
                   None, refused=(imagelog.InvalidFrame, f"raw mode '{mode}' is not supported"))  # fmt: skip
    yield Case("raw-RGB-short", rgb.tobytes()[:-1], {"size": (W, H), "mode": "RGB"},
               None, refused=(imagelog.InvalidFrame, f"needs {W * H * 3} bytes"))  # fmt: skip


def _pil_bytes(arr: np.ndarray[Any, Any], fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _encoded_cases() -> Iterator[Case]:
    """Already-encoded bytes, made by other encoders than imagelog's; decoded by reference ones."""
    gray, rgb, rgba = (numpy_frame("uint8", x) for x in ("HxW", "HxWx3", "HxWx4"))
    g16, rgb16 = numpy_frame("uint16", "HxW"), numpy_frame("uint16", "HxWx3")
    jpeg_rgb, jpeg_gray = _pil_bytes(rgb, "JPEG", quality=80), _pil_bytes(gray, "JPEG")
    webp_lossy = bytes(imagecodecs.webp_encode(rgb, level=80, lossless=False))
    palette = io.BytesIO()
    Image.fromarray(rgb).quantize(32).save(palette, format="PNG")
    made: dict[str, tuple[bytes, np.ndarray[Any, Any]]] = {
        "jpeg-gray": (jpeg_gray, np.asarray(Image.open(io.BytesIO(jpeg_gray)))),
        "jpeg-rgb": (jpeg_rgb, np.asarray(Image.open(io.BytesIO(jpeg_rgb)))),
        "png-gray": (_pil_bytes(gray, "PNG"), gray),
        "png-rgb": (_pil_bytes(rgb, "PNG"), rgb),
        "png-rgba": (_pil_bytes(rgba, "PNG"), rgba),
        "png-gray16": (bytes(imagecodecs.png_encode(g16)), g16),
        "png-rgb16": (bytes(imagecodecs.png_encode(rgb16)), rgb16),
        "png-1bit": (_pil_bytes(gray > 128, "PNG"), gray > 128),
        "png-palette": (palette.getvalue(), np.asarray(Image.fromarray(rgb).quantize(32).convert("RGB"))),
        "webp-rgb": (bytes(imagecodecs.webp_encode(rgb, lossless=True)), rgb),
        "webp-rgba": (bytes(imagecodecs.webp_encode(rgba, lossless=True)), rgba),
        "webp-lossy": (webp_lossy, np.asarray(imagecodecs.webp_decode(webp_lossy))),
        "jxl-gray": (bytes(imagecodecs.jpegxl_encode(gray, lossless=True)), gray),
        "jxl-rgb": (bytes(imagecodecs.jpegxl_encode(rgb, lossless=True)), rgb),
        "jxl-rgba": (bytes(imagecodecs.jpegxl_encode(rgba, lossless=True)), rgba),
        "jxl-gray16": (bytes(imagecodecs.jpegxl_encode(g16, lossless=True)), g16),
        "jxl-rgb16": (bytes(imagecodecs.jpegxl_encode(rgb16, lossless=True)), rgb16),
    }  # fmt: skip
    for name, (data, pixels) in made.items():
        yield Case(f"bytes-{name}", data, {}, pixels, encoded=True)
    la = _pil_bytes(np.dstack([gray, gray]), "PNG")
    yield Case("bytes-png-gray-alpha", la, {}, None,
               refused=(imagelog.InvalidFrame, "mode 'LA'"))  # fmt: skip
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, format="JPEG")
    yield Case("bytes-jpeg-cmyk", cmyk.getvalue(), {}, None,
               refused=(imagelog.InvalidFrame, "mode 'CMYK'"))  # fmt: skip
    yield Case("bytes-garbage", b"\x00" * 100, {}, None,
               refused=(imagelog.InvalidFrame, "not a JPEG, PNG, WebP or JPEG XL"))  # fmt: skip
    yield Case("bytes-torn-png", _pil_bytes(rgb, "PNG")[:20], {}, None,
               refused=(imagelog.InvalidFrame, "PNG"))  # fmt: skip


CASES = {c.name: c for c in [*_numpy_cases(), *_pil_cases(), *_raw_cases(), *_encoded_cases()]}

# --- the oracle -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the contract says happens to a frame of ``dtype``/``channels`` under a format."""

    stored_as: str | None  # the record's image.format, or None: FormatMismatch in the caller
    lossless: bool = True
    refusal: str = ""  # words the FormatMismatch message must contain


def oracle(fmt: str, dtype: str, channels: int) -> Outcome:
    """The documented outcome, from the tables above."""
    if fmt in PRESETS:
        column = "uint8 RGBA" if (dtype, channels) == ("uint8", 4) else dtype
        stored = PRESETS[fmt][column]
        if H * W < 256 * 256:
            stored = SMALL_FRAMES.get(fmt, {}).get(column, stored)
        return Outcome(stored, lossless=stored != "jpeg")
    holds = CODECS[fmt]
    name = fmt.partition(":")[0]
    if dtype not in holds.dtypes:
        return Outcome(None, refusal=f"cannot store {dtype} frames")
    if channels not in holds.channels:
        return Outcome(None, refusal=f"cannot store {channels}-channel frames")
    return Outcome(name, lossless=holds.lossless)


# --- logging the matrix: one run per format, read back once ----------------------------------------


@dataclasses.dataclass
class Result:
    """What became of one case under one format."""

    raised: BaseException | None = None
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    loaded: list[np.ndarray[Any, Any]] = dataclasses.field(default_factory=list)
    stored: list[bytes] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class FormatRun:
    """Every case logged under one format: per-case results and the log's ``stats()``."""

    results: dict[str, Result]
    stats: dict[str, Any]


@pytest.fixture(name="matrix", scope="module")
def _matrix(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], FormatRun]:
    done: dict[str, FormatRun] = {}

    def run_format(fmt: str) -> FormatRun:
        if fmt in done:
            return done[fmt]
        run_dir = tmp_path_factory.mktemp("matrix") / fmt.replace(":", "_")
        results = {name: Result() for name in CASES}
        with imagelog.open(run_dir, format=fmt, strict=False) as log:
            for name, case in CASES.items():
                try:
                    log.log(case.frame, case=name, **case.kwargs)
                except Exception as exc:  # the contract's other branch: checked per case
                    results[name].raised = exc
        run = imagelog.read(run_dir)
        for rec in run.records(include_events=True):
            res = results[rec["meta"]["case"]]
            res.records.append(rec)
            if rec["event"]["action"] == "logged":
                res.loaded.append(run.load(rec))
                res.stored.append(run.read_bytes(rec))
        done[fmt] = FormatRun(results, log.stats())
        return done[fmt]

    return run_format


def _psnr(out: np.ndarray[Any, Any], want: np.ndarray[Any, Any]) -> float:
    """Peak signal-to-noise ratio in dB, the peak being the dtype's maximum."""
    peak = float(np.iinfo(want.dtype).max)
    mse = float(np.mean((out.astype(np.float64) - want.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


@pytest.mark.parametrize("case_name", list(CASES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_frame_comes_back_as_logged_or_log_raises(
    matrix: Callable[[str], FormatRun], fmt: str, case_name: str
) -> None:
    """log() raises in the caller's thread naming the problem, or the frame is one record whose
    load() gives back exactly (lossless) or within MIN_PSNR_DB (lossy) what was logged."""
    case = CASES[case_name]
    res = matrix(fmt).results[case_name]
    if case.refused is not None:
        error, words = case.refused
        assert isinstance(res.raised, error), f"expected {error.__name__}, got {res.raised!r}"
        assert words in str(res.raised)
        assert not res.records
        return
    assert case.expected is not None
    want = case.expected
    channels = 1 if want.ndim == 2 else int(want.shape[2])
    outcome = (
        Outcome(None)  # encoded bytes: stored untouched, whatever the format
        if case.encoded
        else oracle(fmt, want.dtype.name, channels)
    )
    if outcome.stored_as is None and not case.encoded:
        assert isinstance(res.raised, imagelog.FormatMismatch), res.raised
        assert outcome.refusal in str(res.raised)
        assert "use '" in str(res.raised)  # and names an alternative
        assert not res.records
        return
    assert res.raised is None, f"log() raised {res.raised!r}"
    assert len(res.records) == 1, [r["event"] for r in res.records]
    rec, out = res.records[0], res.loaded[0]
    image = rec["image"]
    assert (image["height"], image["width"]) == want.shape[:2]
    assert (image["dtype"], image["channels"]) == (want.dtype.name, channels)
    assert (out.dtype, out.shape) == (want.dtype, want.shape)
    if case.encoded:
        assert image["encoder"]["name"] == "passthrough"
        assert res.stored[0] == case.frame  # byte for byte
        assert out.tobytes() == want.tobytes()
        return
    assert image["format"] == outcome.stored_as
    assert image["lossless"] is outcome.lossless
    if outcome.lossless:
        assert out.tobytes() == want.tobytes()  # every bit, NaN included
    else:
        assert _psnr(out, want) >= MIN_PSNR_DB


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_frame_failed_in_the_background(matrix: Callable[[str], FormatRun], fmt: str) -> None:
    """What log() accepted was written: nothing failed or was dropped behind the caller's back."""
    stats = matrix(fmt).stats
    assert stats["failed"] == 0, stats["last_error"]
    assert stats["dropped"] == 0, stats["dropped_by_reason"]
    assert stats["written"] == stats["logged"]


def test_the_matrix_covers_the_contract() -> None:
    """Every documented dtype, layout, input kind and format is in the matrix."""
    kinds = {name.split("-")[0] for name in CASES}
    assert kinds == {"numpy", "pil", "raw", "rawframe", "bytes"}
    assert {f"numpy-{d}-{lay}" for d in ("uint8", "uint16", "float32", "bool")
            for lay in ("HxW", "HxWx1", "HxWx3", "HxWx4")} <= set(CASES)  # fmt: skip
    assert {f"bytes-{k}-rgb" for k in ("jpeg", "png", "webp", "jxl")} <= set(CASES)
    assert set(codecs.names()) <= {f.partition(":")[0] for f in FORMATS}  # a new codec joins


#: text that only UTF-8 holds: Cyrillic, a Latin-1 letter, a character beyond the BMP
NON_ASCII = {"source": "камера-1", "note": "café", "emoji": "📷", "message": "défaut détecté"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_ascii_text_round_trips_in_every_format(tmp_path: Any, fmt: str) -> None:
    """Non-ASCII source, message and metadata are stored in every format and dtype the format
    holds (the TIFF tag is ASCII: the record goes in escaped), and reindex reads them back."""
    from imagelog.audit import reindex
    from imagelog.stores import make_store

    run_dir = tmp_path / "run"
    logged = 0
    with imagelog.open(run_dir, format=fmt, strict=True) as log:
        for dtype in ("uint8", "uint16", "float32", "bool"):
            for layout in ("HxW", "HxWx3"):
                if oracle(fmt, dtype, 1 if layout == "HxW" else 3).stored_as is None:
                    continue
                log.log(
                    numpy_frame(dtype, layout), source=NON_ASCII["source"],
                    message=NON_ASCII["message"], note=NON_ASCII["note"],
                    emoji=NON_ASCII["emoji"], case=f"{dtype}-{layout}",
                )  # fmt: skip
                logged += 1
    assert logged and log.stats()["written"] == logged, log.stats()["last_error"]

    def texts(run_path: Any) -> dict[str, tuple[str, str, str, str]]:
        recs = imagelog.read(run_path).records()
        return {r["meta"]["case"]: (r["image"]["source"], r["message"], r["meta"]["note"],
                                    r["meta"]["emoji"]) for r in recs}  # fmt: skip

    want = (NON_ASCII["source"], NON_ASCII["message"], NON_ASCII["note"], NON_ASCII["emoji"])
    before = texts(run_dir)
    assert len(before) == logged and set(before.values()) == {want}
    report = reindex(make_store(run_dir))
    assert not report.unrecoverable
    assert texts(run_dir) == before

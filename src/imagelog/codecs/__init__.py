"""The codec registry and the presets: which format stores which frame, with which parameters.

A format is named by a spec string: a registered codec name with optional parameters
(``"png"``, ``"png:level=1"``, ``"jpeg:quality=85"``, ``"jxl:effort=1"``) or a preset named for
its use (``"lossless"``, ``"compact"``, ``"preview"``, ``"archive"``), which picks a codec per dtype.

>>> codec, params = resolve("jpeg:quality=85", dtype="uint8", channels=3)
>>> codec.name, params
('jpeg', {'quality': 85})
>>> resolve("lossless", dtype="uint16", channels=1)[0].name
'jxl'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import UnknownFormat
from .avif import AVIF
from .base import Codec
from .jpeg import JPEG
from .jxl import JPEGXL
from .npy import LZ4_MAGIC, NPY_MAGIC, ZSTD_MAGIC, Npy
from .passthrough import Passthrough, decode_any
from .png import PNG
from .qoi import MAGIC as QOI_MAGIC
from .qoi import QOI
from .tiff import TIFF
from .webp import WebP

__all__ = [
    "PRESETS",
    "SMALL_FRAME_PIXELS",
    "Codec",
    "decode_any",
    "embedded_record",
    "get",
    "names",
    "parse_spec",
    "register",
    "resolve",
    "small_frame_spec",
    "sniff",
]

_REGISTRY: dict[str, Codec] = {}
_ALIASES = {"jpg": "jpeg", "jpegxl": "jxl", "tif": "tiff"}

#: preset -> dtype -> spec. Chosen by measurement on the 2-core reference machine (1080p, one
#: core, camera-like frames; docs/formats.md has the tables, ``imagelog bench`` measures yours):
#:
#: - ``lossless``: the fastest lossless format not larger than PNG. JPEG XL effort 1: RGB 60
#:   fps at 50% of raw (PNG level 6: 1.4 fps, 56%); 16-bit depth 104 fps at 37% (PNG 2 fps,
#:   50%). Only raw npy is faster (92%); QOI is slower here, 67%. (Without the ``fast-jxl``
#:   extra, JPEG XL effort 1 runs through imagecodecs at 13-20 fps on AVX2-only CPUs:
#:   docs/formats.md explains why.)
#: - ``compact``: the smallest lossless format at >= 30 fps on one core: JPEG XL effort 1 again;
#:   effort 2 saves 2 points (48%) at 8 fps. Without ``fast-jxl`` nothing compact reaches 30
#:   fps/core for 8-bit RGB; effort 1 stays the compromise (keeps up with 30 fps on 2 cores).
#: - ``preview``: JPEG quality 90 (150 fps, 6% of raw, PSNR 38 dB); what JPEG cannot hold
#:   (16-bit, RGBA) goes to JPEG XL effort 1, lossless, rather than PNG level 1 (slower, larger).
#: - ``archive``: PNG at zlib level 6, what every viewer and library opens.
#:
#: float32 goes to TIFF with zstd and the floating-point predictor (30 fps, 57%; TIFF deflate
#: does 6 fps), except in ``archive`` (deflate: opens in more TIFF readers). bool masks go to
#: 1-bit PNG (115 fps, 2% of raw).
PRESETS: dict[str, dict[str, str]] = {
    "lossless": {
        "uint8": "jxl:effort=1",
        "uint16": "jxl:effort=1",
        "float32": "tiff:compression=zstd",
        "bool": "png",
    },
    "compact": {
        "uint8": "jxl:effort=1",
        "uint16": "jxl:effort=1",
        "float32": "tiff:compression=zstd",
        "bool": "png",
    },
    "preview": {
        "uint8": "jpeg:quality=90",
        "uint16": "jxl:effort=1",
        "float32": "tiff:compression=zstd",
        "bool": "png",
    },
    "archive": {
        "uint8": "png:level=6",
        "uint16": "png:level=6",
        "float32": "tiff",
        "bool": "png:level=6",
    },
}
#: Frames under this many pixels: the ``lossless`` preset stores 8-bit frames as TIFF with zstd,
#: which has almost no fixed cost per frame. Measured single-threaded on camera-like RGB (AMD
#: EPYC, AVX2): 128x128, TIFF zstd 131-198 µs vs JPEG XL effort 1 692-733 µs (63% vs 56% of raw);
#: 256x256, 576 vs 808 µs; the two meet at 640x480 (2.5-2.7 ms each), where JPEG XL's smaller
#: files win. ``compact`` keeps JPEG XL (its point is size); ``codec_options`` (tuning the
#: preset's codec) keep it too.
SMALL_FRAME_PIXELS = 256 * 256
_SMALL_FRAMES = {"lossless": {"uint8": "tiff:compression=zstd"}}


def small_frame_spec(spec: str, dtype: str) -> str | None:
    """The format for a frame under ``SMALL_FRAME_PIXELS`` under ``spec``, if it differs."""
    name, params = parse_spec(spec)
    if params:
        return None
    return _SMALL_FRAMES.get(name.lower(), {}).get(dtype)


#: presets that fall back on a 4-channel uint8 frame (JPEG has no alpha).
_RGBA_FALLBACK = {"preview": "jxl:effort=1"}


def register(codec: Codec) -> None:
    """Add a codec under its ``name`` (a new format is a new module plus this one call)."""
    _ = codec.version  # probe once, now, in the importing thread (loads the codec's module)
    _REGISTRY[codec.name] = codec


def get(name: str) -> Codec:
    """Return the codec registered under ``name`` (or an alias such as ``jpg``)."""
    key = _ALIASES.get(name.lower(), name.lower())
    try:
        return _REGISTRY[key]
    except KeyError:
        raise UnknownFormat(
            f"unknown format {name!r}; formats: {', '.join(names())}; presets: {', '.join(PRESETS)}"
        ) from None


def names() -> list[str]:
    """Registered codec names, sorted."""
    return sorted(n for n in _REGISTRY if n != "passthrough")


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"png:level=1,strategy=3"`` into ``("png", {"level": 1, "strategy": 3})``."""
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq or not key:
            raise UnknownFormat(f"format {spec!r}: parameters are written name=value, got {item!r}")
        params[key.strip()] = _value(val.strip())
    return name.strip(), params


def resolve(
    spec: str, *, dtype: str, channels: int, options: Mapping[str, Any] | None = None
) -> tuple[Codec, dict[str, Any]]:
    """Choose the codec and full parameters for a frame of ``dtype``/``channels`` under ``spec``."""
    name, params = parse_spec(spec)
    preset = PRESETS.get(name.lower())
    if preset is not None:
        if dtype not in preset:
            raise UnknownFormat(f"preset {name!r} has no format for {dtype} frames")
        chosen = preset[dtype]
        if channels == 4 and dtype == "uint8" and name.lower() in _RGBA_FALLBACK:
            chosen = _RGBA_FALLBACK[name.lower()]
        name, preset_params = parse_spec(chosen)
        params = {**preset_params, **params}
    codec = get(name)
    return codec, codec.params({**params, **(options or {})})


def sniff(data: bytes) -> Codec | None:
    """The registered codec that wrote ``data``, told by its first bytes, or None.

    >>> sniff(b"qoif" + bytes(10)).name, sniff(b"hello")
    ('qoi', None)
    """
    from ..frames import sniff_format

    head = bytes(data[:16])
    name = sniff_format(head)
    if name is None:
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            name = "tiff"
        elif head[:4] == QOI_MAGIC:
            name = "qoi"
        elif head[4:12] in (b"ftypavif", b"ftypavis"):
            name = "avif"
        elif head[:6] == NPY_MAGIC or head[:4] in (ZSTD_MAGIC, LZ4_MAGIC):
            name = "npy"
    return None if name is None else _REGISTRY.get(name)


for _codec in (PNG(), JPEG(), WebP(), TIFF(), JPEGXL(), QOI(), Npy(), AVIF(), Passthrough()):
    register(_codec)


def embedded_record(data: bytes) -> dict[str, Any] | None:
    """The record embedded in encoded image bytes (PNG iTXt, XMP, TIFF tag), or None."""
    found = sniff(data)  # its own format first, then every other registered one
    order = [found.name] if found is not None and found.name in names() else []
    order += [n for n in names() if n not in order]
    for name in order:
        try:
            text = get(name).extract(data)
        except Exception:
            continue
        if text:
            try:
                rec = json.loads(text)
            except ValueError:
                continue
            if isinstance(rec, dict):
                return rec
    return None

"""Encoding checks: does a logged frame look like what it was declared to be (numpy only)?

"Always check your encoding parameters": a wrong stride, Bayer pattern or channel order gives
frames that decode fine and look wrong. ``check_frame`` looks for the signs, cheaply, on a
sample of rows; ``open(check_encoding="sample")`` runs it in the background on 1 frame in 100
and writes what it finds as ``encoding_warning`` records (docs/formats.md has the measured
false-positive and catch rates). The checks are heuristics about natural scenes: a test chart,
a scene of one colour or a gray world defeats some of them, and they say so by staying silent.

- ``constant``: every sample has one value (a lens cap, a dead link, an all-zero buffer).
- ``saturated``: at least half the samples are at the bit depth's maximum.
- ``out_of_range``: samples above the declared bit depth (``bayer_rggb12`` holding 16-bit
  or MSB-aligned data).
- ``sheared``: rows line up better with their neighbour shifted sideways than straight below
  (a wrong stride or width: each row starts a few pixels off), or differ from the row below
  far more than from their own neighbouring pixel.
- ``bayer_pattern``: the two green sites of a Bayer quad are the pair that agree, so the
  pattern whose greens disagree is the wrong one (RGGB/BGGR read as GRBG/GBRG, or the reverse).
- ``channel_order``: coloured pixels are mostly bluish (B > R) where natural scenes are mostly
  warm: R and B swapped (BGR logged as RGB, RGGB as BGGR, NV12 as NV21). A blue scene (sky,
  sea) trips it, which is why it needs a strong majority.

>>> from imagelog.samples import photo
>>> rgb = np.ascontiguousarray(photo("chelsea.png"))
>>> [f.kind for f in check_frame(rgb)], [f.kind for f in check_frame(rgb[:, :, ::-1])]
([], ['channel_order'])
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .pixfmt import PixelFormat, parse

__all__ = ["KINDS", "Finding", "check_frame"]

Array = np.ndarray[Any, Any]

#: Every kind of finding, in the order they are checked.
KINDS = ("constant", "saturated", "out_of_range", "sheared", "bayer_pattern", "channel_order")

#: Thresholds (chosen on the photographs in bench/data, see bench/pixfmt.py).
SHEAR_RATIO = 0.7  # best sideways match / straight-below match (natural crops: >= 0.747)
SHEAR_VERTICAL = 3.0  # row-to-row difference / pixel-to-pixel difference
SHEAR_MAX_SHIFT = 16  # pixels searched either way
GREEN_RATIO = 1.3  # declared greens' disagreement / the other diagonal's
COOL_SHARE = 0.8  # share of coloured pixels that are bluish
COLOURED_SHARE = 0.05  # at least this share of pixels must be coloured to judge
SATURATED_SHARE = 0.5
MAX_ROWS = 128  # row pairs sampled per check
MAX_COLS = 1024  # columns compared per row pair (the middle of the frame)


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One suspicion about a frame: its ``kind`` (one of ``KINDS``), a sentence, the figures."""

    kind: str
    message: str
    values: dict[str, float]


def _sites(mosaic: Array) -> list[Array]:
    """The four sites of up to ``MAX_ROWS`` quad rows, evenly spread (as float32)."""
    h, w = mosaic.shape[0] // 2 * 2, mosaic.shape[1] // 2 * 2
    quads = _rows(h // 2 + 1, 1) * 2  # first rows of sampled quads
    top, bottom = mosaic[quads, :w].astype(np.float32), mosaic[quads + 1, :w].astype(np.float32)
    return [top[:, 0::2], top[:, 1::2], bottom[:, 0::2], bottom[:, 1::2]]


def _grid(n: int) -> int:
    """A step that leaves about 64k samples of ``n``."""
    return max(1, int((n / 65536) ** 0.5))


def _rows(n: int, step: int) -> Array:
    return np.unique(np.linspace(0, n - step - 1, min(MAX_ROWS, n - step)).astype(np.intp))


def _shear(plane: Array, row_step: int, col_step: int, peak: float) -> Finding | None:
    h, w = plane.shape
    m = SHEAR_MAX_SHIFT * col_step
    if h < row_step + 2 or w < 4 * m:
        return None
    rows = _rows(h, row_step)
    if w > MAX_COLS + 2 * m:  # the middle MAX_COLS columns, on the colour grid
        left = (w - MAX_COLS) // 2 // col_step * col_step - m
        plane, w = plane[:, left : left + MAX_COLS + 2 * m], MAX_COLS + 2 * m
    a = plane[rows].astype(np.float32)
    b = plane[rows + row_step].astype(np.float32)
    core = a[:, m : w - m]
    errs = {
        d: float(np.mean(np.abs(b[:, m + d * col_step : w - m + d * col_step] - core)))
        for d in range(-SHEAR_MAX_SHIFT, SHEAR_MAX_SHIFT + 1)
    }
    best = min(errs, key=lambda d: errs[d])
    straight = errs[0]
    across = float(np.mean(np.abs(a[:, col_step:] - a[:, :-col_step])))
    values = {"shift": float(best * col_step), "ratio": round(errs[best] / max(straight, 1e-9), 3),
              "vertical": round(straight / max(across, 1e-9), 3)}  # fmt: skip
    if straight < 0.002 * peak:  # flat: nothing to tell from
        return None
    if best != 0 and errs[best] < SHEAR_RATIO * straight:
        return Finding(
            "sheared",
            f"rows line up best shifted {best * col_step:+d} px from the row below "
            f"({errs[best]:.1f} vs {straight:.1f} straight): is the stride (or width) right?",
            values,
        )
    if straight > SHEAR_VERTICAL * across:
        return Finding(
            "sheared",
            f"rows differ from the row below {values['vertical']:.1f}x more than from their own "
            "neighbouring pixels: is the stride (or width) right?",
            values,
        )
    return None


def _warm_cool(red: Array, green: Array, blue: Array, peak: float) -> Finding | None:
    hi = np.maximum(np.maximum(red, green), blue)
    lo = np.minimum(np.minimum(red, green), blue)
    coloured = (hi - lo) > 0.1 * peak
    share = float(np.mean(coloured))
    if share < COLOURED_SHARE:
        return None
    diff = (red - blue)[coloured]
    warm = int(np.count_nonzero(diff > 0.05 * peak))
    cool = int(np.count_nonzero(diff < -0.05 * peak))
    if warm + cool == 0:
        return None
    cool_share = cool / (warm + cool)
    if cool_share < COOL_SHARE:
        return None
    return Finding(
        "channel_order",
        f"{cool_share:.0%} of the coloured pixels are bluish (B > R), where scenes are mostly "
        "warm: are red and blue swapped (BGR as RGB, RGGB as BGGR, NV12 as NV21)?",
        {"cool_share": round(cool_share, 3), "coloured_share": round(share, 3)},
    )


def _chroma_warm_cool(u: Array, v: Array) -> Finding | None:
    """The same test on YUV chroma: warm is Cr > Cb (R > B), cool the reverse."""
    step = max(1, u.size // 65536)
    cb = u.reshape(-1)[::step].astype(np.float32) - 128
    cr = v.reshape(-1)[::step].astype(np.float32) - 128
    coloured = np.maximum(np.abs(cb), np.abs(cr)) > 8
    share = float(np.mean(coloured))
    if share < COLOURED_SHARE:
        return None
    diff = (cr - cb)[coloured]
    warm = int(np.count_nonzero(diff > 4))
    cool = int(np.count_nonzero(diff < -4))
    if warm + cool == 0 or cool / (warm + cool) < COOL_SHARE:
        return None
    cool_share = cool / (warm + cool)
    return Finding(
        "channel_order",
        f"{cool_share:.0%} of the coloured pixels are bluish (Cb > Cr), where scenes are mostly "
        "warm: are U and V swapped (NV12 as NV21, YUYV as YVYU)?",
        {"cool_share": round(cool_share, 3), "coloured_share": round(share, 3)},
    )


def _peak(dtype: np.dtype[Any], bit_depth: int | None) -> float:
    if dtype.kind == "f":
        return 1.0
    if bit_depth is not None and bit_depth < dtype.itemsize * 8:
        return float(2**bit_depth - 1)
    return float(np.iinfo(dtype).max)


def check_frame(
    pixels: Array, pixel_format: str | PixelFormat | None = None, *, bit_depth: int | None = None
) -> list[Finding]:
    """What looks wrong with a frame as delivered (the array ``log()`` copied), or ``[]``.

    Args:
        pixels: the frame: ``HxW``/``HxWx3``/``HxWx4`` for plain frames (RGB order), or the
            stored shape of ``pixel_format`` (YUYV may also be ``H x 2W`` bytes).
        pixel_format: the declared ``image.pixel_format``; None for frames logged without one.
        bit_depth: significant bits (default: the pixel format's, else the dtype's).
    """
    fmt = None if pixel_format is None else parse(pixel_format)
    if pixels.dtype == np.bool_ or pixels.size == 0:
        return []
    depth = bit_depth if bit_depth is not None else (fmt.bit_depth if fmt else None)
    peak = _peak(pixels.dtype, depth)
    out: list[Finding] = []
    lo, hi = pixels.min(), pixels.max()
    if lo == hi:
        return [Finding("constant", f"every sample is {hi}", {"value": float(hi)})]
    if pixels.dtype.kind != "f":
        at_max = float(np.mean(pixels == peak)) if hi >= peak else 0.0
        if at_max >= SATURATED_SHARE:
            out.append(
                Finding(
                    "saturated",
                    f"{at_max:.0%} of the samples are at the maximum ({peak:.0f})",
                    {"share": round(at_max, 3)},
                )
            )
        if hi > peak:
            out.append(
                Finding(
                    "out_of_range",
                    f"samples reach {hi}, above the {depth}-bit maximum {peak:.0f}: are they "
                    "MSB-aligned, or is the bit depth wrong?",
                    {"max": float(hi), "peak": peak},
                )
            )
            peak = float(np.iinfo(pixels.dtype).max)
    kind = fmt.kind if fmt else ("mono" if pixels.ndim == 2 else "rgb")
    if kind == "bayer":
        assert fmt is not None
        shear = _shear(pixels, 2, 2, peak)
        sites = _sites(pixels)
        greens = [i for i, c in enumerate(fmt.pattern) if c == "G"]
        main = float(np.mean(np.abs(sites[0] - sites[3])))
        anti = float(np.mean(np.abs(sites[1] - sites[2])))
        declared, other = (main, anti) if greens == [0, 3] else (anti, main)
        if declared > GREEN_RATIO * other and declared - other > 0.005 * peak:
            guess = "GBRG or GRBG" if greens == [1, 2] else "RGGB or BGGR"
            out.append(
                Finding(
                    "bayer_pattern",
                    f"the green sites of {fmt.name} disagree {declared / max(other, 1e-9):.1f}x "
                    f"more than the other diagonal: is the pattern {guess}?",
                    {"declared": round(declared, 2), "other": round(other, 2)},
                )
            )
        else:
            red, blue = sites[fmt.pattern.index("R")], sites[fmt.pattern.index("B")]
            green = (sites[greens[0]] + sites[greens[1]]) / 2
            swap = _warm_cool(red, green, blue, peak)
            if swap is not None:
                out.append(swap)
    elif kind == "yuv422":
        assert fmt is not None
        packed = pixels.reshape(pixels.shape[0], -1)
        luma = 0 if fmt.pattern == "YUYV" else 1
        shear = _shear(packed[:, luma::2], 1, 1, peak)
        chroma = 1 - luma
        swap = _chroma_warm_cool(packed[:, chroma::4], packed[:, chroma + 2 :: 4])
        if swap is not None:
            out.append(swap)
    elif kind in ("yuv420sp", "yuv420p"):
        assert fmt is not None
        h = pixels.shape[0] * 2 // 3
        shear = _shear(pixels[:h], 1, 1, peak)
        flat = pixels[h:].reshape(-1)
        if kind == "yuv420p":
            u, v = flat[: flat.size // 2], flat[flat.size // 2 :]
        else:
            u, v = (flat[0::2], flat[1::2]) if fmt.pattern == "NV12" else (flat[1::2], flat[0::2])
        swap = _chroma_warm_cool(u, v)
        if swap is not None:
            out.append(swap)
    elif pixels.ndim == 3 and pixels.shape[2] >= 3:
        shear = _shear(pixels[:, :, 1], 1, 1, peak)
        k = _grid(pixels.shape[0] * pixels.shape[1])
        f = pixels[::k, ::k, :3].astype(np.float32)
        swap = _warm_cool(f[:, :, 0], f[:, :, 1], f[:, :, 2], peak)
        if swap is not None:
            out.append(swap)
    else:
        shear = _shear(pixels.reshape(pixels.shape[0], pixels.shape[1]), 1, 1, peak)
    if shear is not None:
        out.append(shear)
    return sorted(out, key=lambda f: KINDS.index(f.kind))

"""Camera pixel formats (#16): the caller's cost at 1080p beside RGB, bytes stored, and the
encoding checks' false-positive rate on photographs and catch rate on mis-declared frames.

``python -m bench.pixfmt [--quick] [--data bench/data]`` (also part of ``make bench``); the
photographs ship in ``bench/data`` (public domain and CC0, see its SOURCES.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import imagelog
from imagelog import pixfmt
from imagelog.checks import check_frame
from imagelog.samples import CameraSimulator

Array = np.ndarray[Any, Any]
W, H = 1920, 1080
DATA = Path(__file__).resolve().parent / "data"

# (label, pixel format or None for a plain RGB array, stride padding in bytes, as bytes?)
CONTENDERS: list[tuple[str, str | None, int, bool]] = [
    ("RGB array (HxWx3 uint8)", None, 0, False),
    ("bayer_rggb8 bytes", "bayer_rggb8", 0, True),
    ("bayer_rggb8 bytes, rows padded to 2048", "bayer_rggb8", 128, True),
    ("bayer_rggb12 bytes (16-bit container)", "bayer_rggb12", 0, True),
    ("RGB 16-bit array (HxWx3 uint16)", "rgb16", 0, False),
    ("yuyv bytes", "yuyv", 0, True),
    ("nv12 bytes", "nv12", 0, True),
    ("nv12 bytes, rows padded to 2048", "nv12", 128, True),
]


def _pad(stored: Array, fmt: pixfmt.PixelFormat, stride: int) -> bytes:
    w = stored.shape[1]
    h = stored.shape[0] * 2 // 3 if fmt.kind in ("yuv420sp", "yuv420p") else stored.shape[0]
    raw = np.ascontiguousarray(stored).view(np.uint8).reshape(-1)
    out, pos = bytearray(), 0
    for rows, row, pitch in fmt.planes(w, h, stride):
        block = np.zeros((rows, pitch), np.uint8)
        block[:, :row] = raw[pos : pos + rows * row].reshape(rows, row)
        pos += rows * row
        out += block.tobytes()
    return bytes(out)


def _frames(
    fmt_name: str | None, pad: int, as_bytes: bool, n: int
) -> tuple[list[Any], dict[str, Any]]:
    cam = iter(CameraSimulator(W, H, seed=7))
    out: list[Any] = []
    kw: dict[str, Any] = {}
    for _ in range(n):
        rgb = next(cam)
        if fmt_name is None:
            out.append(rgb)
            continue
        fmt = pixfmt.parse(fmt_name)
        if fmt.dtype == "uint16":
            rgb = (rgb.astype(np.uint16) * 257) >> (16 - fmt.bit_depth)
        stored = pixfmt.from_rgb(rgb, fmt)
        kw = {"pixel_format": fmt_name}
        if as_bytes:
            stride = fmt.row_bytes(W) + pad
            out.append(_pad(stored, fmt, stride))
            kw.update(size=(W, H), stride=stride)
        else:
            out.append(stored)
    return out, kw


def _p(ns: list[int], q: float) -> float:
    us = sorted(x / 1000 for x in ns)
    return us[min(len(us) - 1, int(len(us) * q))]


def caller(quick: bool) -> list[dict[str, Any]]:
    """Each contender: a burst (sustained frames/s, stored bytes) and a 30 fps paced run (p99)."""
    results = []
    burst_n, paced_n = (30, 30) if quick else (120, 90)
    for label, name, pad, as_bytes in CONTENDERS:
        print(f"  pixfmt: {label}", file=sys.stderr, flush=True)
        bank, kw = _frames(name, pad, as_bytes, 8)
        delivered = len(bank[0]) if as_bytes else int(bank[0].nbytes)
        row: dict[str, Any] = {"label": label, "pixel_format": name, "delivered_bytes": delivered}
        with tempfile.TemporaryDirectory() as d:
            log = imagelog.open(d, on_full="block", hash=False)
            times = []
            t0 = time.perf_counter()
            for i in range(burst_n):
                s = time.perf_counter_ns()
                log.log(bank[i % len(bank)], source="cam", **kw)
                times.append(time.perf_counter_ns() - s)
            log.close()
            elapsed = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in Path(d, "images").rglob("*") if p.is_file())
            row.update(
                sustained_fps=burst_n / elapsed,
                burst_p99_us=_p(times, 0.99),
                stored_bytes=size / burst_n,
            )
        with tempfile.TemporaryDirectory() as d:
            log = imagelog.open(d, on_full="drop_oldest", hash=False)
            times = []
            period = 1 / 30
            nxt = time.perf_counter()
            for i in range(paced_n):
                nxt += period
                s = time.perf_counter_ns()
                log.log(bank[i % len(bank)], source="cam", **kw)
                times.append(time.perf_counter_ns() - s)
                time.sleep(max(0.0, nxt - time.perf_counter()))
            log.close()
            row.update(
                paced_p50_us=statistics.median(t / 1000 for t in times),
                paced_p99_us=_p(times, 0.99),
                dropped=log.stats()["dropped"],
            )
        results.append(row)
    return results


def intake(quick: bool) -> list[dict[str, Any]]:
    """The caller thread's own work, alone: ``frames.normalise`` (validate, copy into a recycled
    buffer) of each contender, best and median of many: robust to a busy machine."""
    from imagelog.frames import BufferPool, normalise

    n = 20 if quick else 60
    out = []
    for label, name, pad, as_bytes in CONTENDERS:
        bank, kw = _frames(name, pad, as_bytes, 2)
        pool = BufferPool(256 * 2**20)
        times = []
        for i in range(n):
            s = time.perf_counter_ns()
            f = normalise(bank[i % 2], pool=pool, **kw)
            times.append(time.perf_counter_ns() - s)
            assert f.pixels is not None
            pool.give(f.pixels)
        out.append(
            {
                "label": label,
                "best_us": min(times) / 1000,
                "median_us": statistics.median(times) / 1000,
            }
        )
    return out


# -- encoding checks ------------------------------------------------------------------------------
def _photos(data: Path) -> list[tuple[str, Array]]:
    from PIL import Image

    out = []
    for p in sorted(data.glob("*")):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        rgb = np.asarray(Image.open(p).convert("RGB"))
        h, w = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
        rgb = rgb[:h, :w]
        out.append((f"{p.name}", np.ascontiguousarray(rgb)))
        for i, (y, x) in enumerate(((0, 0), (0, w // 2), (h // 2, 0), (h // 2, w // 2))):
            out.append((f"{p.name}#{i}", np.ascontiguousarray(rgb[y : y + h // 2, x : x + w // 2])))
    return out


FP_FORMATS = ["rgb8", "bayer_rggb8", "bayer_gbrg12", "yuyv", "nv12", "i420", "mono8"]


def _declared(rgb: Array, name: str) -> Array:
    fmt = pixfmt.parse(name)
    if fmt.dtype == "uint16":
        rgb = (rgb.astype(np.uint16) * 257) >> (16 - fmt.bit_depth)
    return pixfmt.from_rgb(rgb, fmt)


def _kinds(arr: Array, name: str | None) -> list[str]:
    fmt = None if name in (None, "rgb8") else name
    return [f.kind for f in check_frame(arr, fmt)]


def _wrong_stride(rgb: Array, name: str, off: int) -> Array:
    """The frame read with a stride ``off`` bytes from the true one (padding 64)."""
    fmt = pixfmt.parse(name)
    frame = _declared(rgb, name)
    h, w = rgb.shape[:2]
    true = fmt.row_bytes(w) + 64
    data = _pad(frame, fmt, true) + bytes(max(0, off) * h * 2)
    wrong = true + off
    size = sum(rows * pitch for rows, _, pitch in fmt.planes(w, h, wrong))
    views, _ = pixfmt.plane_views(data[:size], fmt, w, h, wrong)
    return np.concatenate([v.reshape(-1) for v in views]).reshape(frame.shape)


def checks(data: Path, quick: bool) -> dict[str, Any]:
    """False positives on the photographs as declared; catches on deliberate mis-declarations."""
    photos = _photos(data)
    if quick:
        photos = photos[::5]
    fp: dict[str, list[Any]] = {}
    for name in FP_FORMATS:
        flagged = []
        for label, rgb in photos:
            kinds = _kinds(_declared(rgb, name), name)
            if kinds:
                flagged.append(f"{label}: {','.join(kinds)}")
        fp[name] = [len(photos), flagged]
    cases: dict[str, list[tuple[Array, str | None, str]]] = {}
    for _, rgb in photos:
        for name in ("rgb8", "bayer_rggb8", "yuyv", "nv12", "mono8"):
            for off in (-64, -8, -2, 2, 8, 64):
                if name == "rgb8" and off % 3 == 0:
                    continue
                cases.setdefault(f"wrong stride ({name}, {abs(off)} bytes)", []).append(
                    (_wrong_stride(rgb, name, off), name, "sheared")
                )
        for true in ("rggb", "bggr", "gbrg", "grbg"):
            mosaic = _declared(rgb, f"bayer_{true}8")
            for wrong in ("rggb", "bggr", "gbrg", "grbg"):
                if wrong == true:
                    continue
                same_diagonal = {true, wrong} in ({"rggb", "bggr"}, {"gbrg", "grbg"})
                key = (
                    "Bayer R/B swapped (rggb as bggr ...)"
                    if same_diagonal
                    else "Bayer pattern shifted (rggb as grbg ...)"
                )
                want = "channel_order" if same_diagonal else "bayer_pattern"
                cases.setdefault(key, []).append((mosaic, f"bayer_{wrong}8", want))
        cases.setdefault("BGR logged as RGB", []).append(
            (np.ascontiguousarray(rgb[:, :, ::-1]), None, "channel_order")
        )
        cases.setdefault("NV12 declared NV21", []).append(
            (_declared(rgb, "nv12"), "nv21", "channel_order")
        )
        cases.setdefault("16-bit data declared 12-bit", []).append(
            (_declared(rgb, "bayer_rggb16"), "bayer_rggb12", "out_of_range")
        )
        cases.setdefault("all-zero frame", []).append(
            (np.zeros(rgb.shape[:2], np.uint8), "mono8", "constant")
        )
        over = np.minimum(rgb.astype(np.uint16) * 4, 255).astype(np.uint8)
        cases.setdefault("overexposed 4x", []).append((over, None, "saturated"))
    catch = {}
    for key, items in cases.items():
        caught = sum(1 for arr, name, want in items if want in _kinds(arr, name))
        any_flag = sum(1 for arr, name, _ in items if _kinds(arr, name))
        catch[key] = {"n": len(items), "caught": caught, "flagged": any_flag}
    return {"photos": len(photos), "false_positives": fp, "catch": catch}


def run(quick: bool) -> dict[str, Any]:
    """Everything, for ``make bench``."""
    data = DATA if DATA.is_dir() else None
    return {
        "intake": intake(quick),
        "caller": caller(quick),
        "checks": checks(data, quick) if data is not None else None,
    }


def table(res: dict[str, Any]) -> str:
    """Markdown tables."""
    rows = []
    if res.get("intake"):
        rows += ["## Camera pixel formats: log()'s own work at 1080p (validate + copy, alone)", "",
                 "| frame | best | median |", "|---|---:|---:|"]  # fmt: skip
        for r in res["intake"]:
            rows.append(
                f"| {r['label']} | {r['best_us'] / 1000:.2f} ms | {r['median_us'] / 1000:.2f} ms |"
            )
        rows.append("")
    rows += [
        "## Camera pixel formats: the caller's cost at 1080p (lossless, hash off)",
        "",
        "| frame | delivered | stored (% of delivered) | sustained frames/s (burst) | log() p50 / p99 @ 30 fps | log() p99 in a burst |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in res["caller"]:
        rows.append(
            f"| {r['label']} | {r['delivered_bytes'] / 1e6:.2f} MB | "
            f"{r['stored_bytes'] / 1e6:.2f} MB ({100 * r['stored_bytes'] / r['delivered_bytes']:.0f}%) | "
            f"{r['sustained_fps']:.1f} | {r['paced_p50_us'] / 1000:.2f} / {r['paced_p99_us'] / 1000:.2f} ms | "
            f"{r['burst_p99_us'] / 1000:.1f} ms |"
        )
    c = res.get("checks")
    if c:
        rows += ["", f"## Encoding checks on {c['photos']} photographs and crops (bench/data)", "",
                 "| declared correctly as | frames | flagged (false positives) | which |", "|---|---:|---:|---|"]  # fmt: skip
        for name, (n, flagged) in c["false_positives"].items():
            rows.append(
                f"| {name} | {n} | {len(flagged)} ({100 * len(flagged) / n:.0f}%) | {'; '.join(flagged)} |"
            )
        rows += [
            "",
            "| mis-declared | frames | caught (right kind) | flagged at all |",
            "|---|---:|---:|---:|",
        ]
        for key, v in c["catch"].items():
            rows.append(
                f"| {key} | {v['n']} | {v['caught']} ({100 * v['caught'] / v['n']:.0f}%) | "
                f"{v['flagged']} ({100 * v['flagged'] / v['n']:.0f}%) |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.pixfmt``."""
    p = argparse.ArgumentParser(prog="python -m bench.pixfmt", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="intake,caller,checks")
    p.add_argument("--data", type=Path, default=DATA)
    a = p.parse_args(argv)
    res: dict[str, Any] = {"intake": [], "caller": [], "checks": None}
    if "intake" in a.only:
        res["intake"] = intake(a.quick)
    if "caller" in a.only:
        res["caller"] = caller(a.quick)
    if "checks" in a.only:
        res["checks"] = checks(a.data, a.quick)
    print(table(res))
    print(json.dumps(res, default=str), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

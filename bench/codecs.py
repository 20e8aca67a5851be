"""Codec table for ``make bench``: every codec on 1080p RGB, 1080p 16-bit depth, 640x480, 128x128.

``run(quick)`` measures (single thread, median of repetitions, camera-like frames), ``table``
renders Markdown, ``chart`` draws frames/s vs bytes per frame as a PNG (Pillow only). Runs
standalone too: ``python -m bench.codecs [--quick] [--json PATH] [--chart PATH]``.
Benchmarks report; they never assert a timing.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

from imagelog import codecs
from imagelog.codec_bench import (
    available_cores,
    candidates_for,
    measure_all,
    preset_names,
    synthetic_frames,
)

__all__ = ["chart", "run", "table"]

#: Timing per codec (seconds) in a full and a quick run, and for the 2-thread GIL check.
FULL_SECONDS = 1.0
QUICK_SECONDS = 0.3
GIL_SECONDS = 0.4

#: (key, title, width, height, dtype)
SETS: tuple[tuple[str, str, int, int, str], ...] = (
    ("rgb1080", "1920x1080 RGB (camera-like: photo mosaic, sensor noise)", 1920, 1080, "uint8"),
    ("depth1080", "1920x1080 16-bit depth (depth-like map, sensor jitter)", 1920, 1080, "uint16"),
    ("rgb640", "640x480 RGB", 640, 480, "uint8"),
    ("rgb128", "128x128 RGB", 128, 128, "uint8"),
)


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _machine() -> dict[str, Any]:
    import imagecodecs
    import numpy as np

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": available_cores(),
        "cpu": cpu or platform.processor(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "imagecodecs": imagecodecs.__version__,
        "pyjpegxl": _dist_version("pyjpegxl"),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()) + " UTC",
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every candidate codec on the four frame sets; JSON-able results.

    Quick: the slow codecs (under ~3 fps at 1080p) are left out, timing is shorter, and the
    2-thread GIL check runs on 1080p RGB only.
    """
    seconds = QUICK_SECONDS if quick else FULL_SECONDS
    sets: dict[str, Any] = {}
    for key, title, width, height, dtype in SETS:
        frames = synthetic_frames(width, height, dtype)
        channels = 1 if frames[0].ndim == 2 else int(frames[0].shape[2])
        specs = candidates_for(dtype, channels, include_slow=not quick)
        gil = key == "rgb1080" or not quick
        rows = measure_all(frames, specs, seconds=seconds, gil=gil, gil_seconds=GIL_SECONDS)
        sets[key] = {
            "title": title,
            "width": width,
            "height": height,
            "dtype": dtype,
            "channels": channels,
            "rows": [
                {
                    **r.to_dict(),
                    "megapixels_per_s": r.fps * width * height / 1e6,
                    "presets": preset_names(r.spec, dtype),
                }
                for r in rows
            ],
        }
    return {"machine": _machine(), "quick": quick, "presets": codecs.PRESETS, "sets": sets}


def _gil(row: dict[str, Any]) -> str:
    s = row.get("speedup_2_threads")
    declared = "yes" if row["releases_gil"] else "no"
    return declared if s is None else f"{declared} ({s:.2f}x)"


def table(results: dict[str, Any]) -> str:
    """The results as Markdown: one table per frame set, fastest first."""
    m = results["machine"]
    out = [
        "## Codecs: frames/s per core and size of every available codec",
        "",
        f"Measured {m['date']} on {m['cores']} core(s), {m['cpu']}; Python {m['python']}, "
        f"imagecodecs {m['imagecodecs']}, pyjpegxl {m.get('pyjpegxl') or 'not installed'}. "
        "fps = frames/s on one core (median, single thread); "
        "GIL = the codec's declaration and the measured 2-thread speed-up (about 2x on 2 cores "
        "means it runs in parallel).",
    ]
    for data in results["sets"].values():
        out += ["", f"### {data['title']}", ""]
        out.append(
            "| format | preset | lossless | fps | MP/s | size % of raw | KB/frame | GIL released |"
        )
        out.append("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
        for r in sorted(data["rows"], key=lambda r: -r["fps"]):
            if r["error"]:
                out.append(f"| {r['spec']} | | | error: {r['error']} | | | | |")
                continue
            if r["lossless"]:
                lossless = "yes" if r["exact"] else "**NOT EXACT**"
            else:
                lossless = f"no ({r['psnr_db']:.1f} dB)"
            out.append(
                f"| `{r['spec']}` | {', '.join(r['presets'])} | {lossless} | {r['fps']:,.1f} | "
                f"{r['megapixels_per_s']:,.0f} | {r['size_pct']:.1f} | "
                f"{r['bytes_per_frame'] / 1000:,.0f} | {_gil(r)} |"
            )
    return "\n".join(out) + "\n"


def chart(results: dict[str, Any], path: str | Path, *, set_key: str = "rgb1080") -> Path:
    """Scatter of frames/s (one core) vs bytes per frame, log-log, as a PNG drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    data = results["sets"][set_key]
    rows = [r for r in data["rows"] if not r["error"] and r["fps"] > 0]
    width, height, margin = 1000, 640, 80
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    xs = [math.log10(r["bytes_per_frame"]) for r in rows]
    ys = [math.log10(r["fps"]) for r in rows]
    x0, x1 = math.floor(min(xs) * 2) / 2, math.ceil(max(xs) * 2) / 2
    y0, y1 = math.floor(min(ys) * 2) / 2, math.ceil(max(ys) * 2) / 2
    x1, y1 = max(x1, x0 + 0.5), max(y1, y0 + 0.5)

    def px(x: float, y: float) -> tuple[float, float]:
        return (margin + (x - x0) / (x1 - x0) * (width - 2 * margin),
                height - margin - (y - y0) / (y1 - y0) * (height - 2 * margin))  # fmt: skip

    draw.rectangle([margin, margin, width - margin, height - margin], outline="black")
    for k in range(math.floor(x0), math.ceil(x1) + 1):
        for mult in (1, 2, 5):
            v = math.log10(mult) + k
            if x0 <= v <= x1:
                x, _ = px(v, y0)
                draw.line([x, height - margin, x, margin], fill=(225, 225, 225))
                draw.text(
                    (x - 15, height - margin + 6), _human(mult * 10**k), fill="black", font=font
                )
    for k in range(math.floor(y0), math.ceil(y1) + 1):
        for mult in (1, 2, 5):
            v = math.log10(mult) + k
            if y0 <= v <= y1:
                _, y = px(x0, v)
                draw.line([margin, y, width - margin, y], fill=(225, 225, 225))
                draw.text((margin - 40, y - 6), f"{mult * 10**k:g}", fill="black", font=font)
    cam = math.log10(30)
    if y0 <= cam <= y1:
        _, y = px(x0, cam)
        draw.line([margin, y, width - margin, y], fill=(200, 60, 60), width=1)
        draw.text(
            (width - margin - 110, y - 14), "30 fps (one core)", fill=(200, 60, 60), font=font
        )
    for r, x, y in zip(rows, xs, ys, strict=True):
        cx, cy = px(x, y)
        colour = (30, 90, 200) if r["lossless"] else (230, 130, 20)
        draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=colour)
        label = r["spec"] + (f" [{', '.join(r['presets'])}]" if r["presets"] else "")
        draw.text((cx + 8, cy - 6), label, fill="black", font=font)
    draw.text((margin, 20), f"{data['title']}: frames/s on one core vs bytes per frame "
              "(log-log; blue lossless, orange lossy)", fill="black", font=font)  # fmt: skip
    draw.text((width // 2 - 60, height - 35), "bytes per frame", fill="black", font=font)
    draw.text((10, margin - 30), "frames/s per core", fill="black", font=font)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:g} {unit}"
        n /= 1000
    return f"{n:g} TB"


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.codecs``: measure, print the Markdown table, optionally save JSON/PNG."""
    p = argparse.ArgumentParser(prog="python -m bench.codecs", description=__doc__)
    p.add_argument("--quick", action="store_true", help="leave out slow codecs, time less")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--chart", metavar="PATH", help="write the frames/s vs size chart (PNG)")
    args = p.parse_args(argv)
    results = run(quick=args.quick)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.chart:
        print(f"chart: {chart(results, args.chart)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

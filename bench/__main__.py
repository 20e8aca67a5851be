"""``make bench``: every benchmark of the suite, a markdown table on stdout, JSON in a file.

``python -m bench [--quick] [--only e2e,codecs,pixfmt,storage,s3,query,view] [--out bench/results/latest.json]``

Each end-to-end contender runs in its own process (peak RSS is per process). Benchmarks measure
and report; they never assert timings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# (contender, size, frames, quick frames, paced fps, on_full, what it shows)
E2E: list[tuple[str, str, int, int, float, str, str]] = [
    ("seed", "1920x1080", 12, 6, 0, "block", "burst"),
    ("lossless", "1920x1080", 150, 60, 0, "block", "burst"),
    ("png:level=1", "1920x1080", 40, 20, 0, "block", "burst"),
    ("preview", "1920x1080", 400, 150, 0, "block", "burst"),
    ("seed", "128x128", 600, 300, 0, "block", "burst"),
    ("lossless", "128x128", 4000, 1500, 0, "block", "burst"),
    ("preview", "128x128", 4000, 1500, 0, "block", "burst"),
    ("lossless", "1920x1080", 150, 60, 30, "drop_oldest", "paced latency"),
    ("preview", "1920x1080", 300, 120, 60, "drop_oldest", "paced latency"),
    ("lossless", "128x128", 2400, 1200, 240, "drop_oldest", "paced latency"),
    ("lossless", "1920x1080", 1000, 300, 0, "block", "memory bound (1,000 frames)"),
]


def machine() -> dict[str, Any]:
    """The hardware and software the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    import imagecodecs
    import numpy
    import PIL

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "imagecodecs": imagecodecs.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run_e2e(quick: bool) -> list[dict[str, Any]]:
    """Each contender in a fresh process."""
    results = []
    for contender, size, frames, qframes, fps, on_full, what in E2E:
        n = qframes if quick else frames
        cmd = [sys.executable, "-m", "bench.e2e", "--contender", contender, "--size", size,
               "--frames", str(n), "--fps", str(fps), "--on-full", on_full]  # fmt: skip
        print(f"  e2e: {contender:12s} {size:>9s} {what} ({n} frames)", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["what"] = what
        results.append(res)
    return results


def e2e_table(results: list[dict[str, Any]]) -> str:
    """Markdown: the seed design vs imagelog's presets, in one run."""
    seed = {r["size"]: r["sustained_fps"] for r in results if r["contender"] == "seed"}
    rows = [
        "| contender | frames | mode | sustained frames/s | vs seed | log() p50 / p99 / max | "
        "bytes/frame (% raw) | dropped | peak RSS |",
        "|---|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        ratio = (
            r["sustained_fps"] / seed[r["size"]]
            if r["size"] in seed and r["what"] == "burst"
            else None
        )
        mode = r["what"] + (f" @ {r['paced_fps']:g} fps" if r["paced_fps"] else "")
        rows.append(
            f"| {'seed design' if r['contender'] == 'seed' else r['contender']} | "
            f"{r['size']} x {r['frames']} | {mode} | {r['sustained_fps']:.1f} | "
            f"{f'{ratio:.1f}x' if ratio else ''} | "
            f"{_us(r['p50_us'])} / {_us(r['p99_us'])} / {_us(r['max_us'])} | "
            f"{r['bytes_per_frame'] / 1e3:,.0f} kB ({100 * r['bytes_per_frame'] / r['raw_bytes_per_frame']:.0f}%) | "
            f"{r['dropped']} | {r['peak_rss_mb']:.0f} MB |"
        )
    return "\n".join(rows)


def _us(v: float) -> str:
    return f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    """Run the suite."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer frames (for a smoke run)")
    p.add_argument("--only", default="e2e,codecs,pixfmt,storage,s3,query,view")
    p.add_argument("--out", default="bench/results/latest.json")
    a = p.parse_args(argv)
    wanted = a.only.split(",")
    report: dict[str, Any] = {"machine": machine(), "quick": a.quick}
    sections: list[str] = []
    m = report["machine"]
    sections.append(
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}, "
        f"numpy {m['numpy']}, Pillow {m['pillow']}, imagecodecs {m['imagecodecs']} ({m['date']})."
    )
    if "e2e" in wanted:
        report["e2e"] = run_e2e(a.quick)
        sections.append("## End to end: the seed design vs imagelog\n\n" + e2e_table(report["e2e"]))
    for name in ("codecs", "pixfmt", "storage", "s3", "query", "view"):
        if name not in wanted:
            continue
        try:
            mod = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            continue
        print(f"  {name} ...", file=sys.stderr, flush=True)
        res = mod.run(a.quick)
        report[name] = res
        sections.append(mod.table(res))
        if hasattr(mod, "chart"):
            chart = Path(a.out).with_name(f"{name}.png")
            chart.parent.mkdir(parents=True, exist_ok=True)
            mod.chart(res, chart)
    text = "\n\n".join(sections)
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

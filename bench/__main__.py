"""``make bench``: every benchmark of the suite, a markdown table on stdout, JSON in a file.

``python -m bench [--quick] [--only e2e,peers,codecs,pixfmt,storage,s3,query,view,ring,select,fleet,tiers,scaling] [--out bench/results/latest.json]``

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

# (contender, size, frames, quick frames, paced fps, on_full, producers, max queue, what it shows)
E2E: list[tuple[str, str, int, int, float, str, int, str, str]] = [
    ("seed", "1920x1080", 12, 6, 0, "block", 1, "256 MiB", "burst"),
    ("lossless", "1920x1080", 150, 60, 0, "block", 1, "256 MiB", "burst"),
    ("lossless", "1920x1080", 150, 60, 0, "block", 4, "256 MiB", "burst"),
    ("preview", "1920x1080", 400, 150, 0, "block", 1, "256 MiB", "burst"),
    ("preview", "1920x1080", 400, 150, 0, "block", 4, "256 MiB", "burst"),
    ("lossless", "640x480", 1000, 300, 0, "block", 1, "256 MiB", "burst"),
    ("preview", "640x480", 2000, 600, 0, "block", 1, "256 MiB", "burst"),
    ("seed", "128x128", 600, 300, 0, "block", 1, "256 MiB", "burst"),
    ("lossless", "128x128", 4000, 1500, 0, "block", 1, "256 MiB", "burst"),
    ("preview", "128x128", 4000, 1500, 0, "block", 1, "256 MiB", "burst"),
    ("lossless", "1920x1080", 300, 120, 0, "drop_oldest", 1, "256 MiB", "burst, drops"),
    ("lossless", "1920x1080", 300, 120, 0, "drop_newest", 1, "256 MiB", "burst, drops"),
    ("lossless", "1920x1080", 300, 120, 60, "drop_oldest", 1, "256 MiB", "paced latency"),
    ("preview", "1920x1080", 300, 120, 60, "drop_oldest", 1, "256 MiB", "paced latency"),
    ("lossless", "128x128", 2400, 1200, 240, "drop_oldest", 1, "256 MiB", "paced latency"),
    ("lossless", "128x128", 4800, 2400, 240, "drop_oldest", 4, "256 MiB", "paced latency"),
    ("lossless", "1920x1080", 400, 200, 0, "drop_oldest", 4, "64 MiB", "overload, memory"),
    ("lossless", "1920x1080", 400, 200, 0, "drop_newest", 4, "64 MiB", "overload, memory"),
    ("lossless", "1920x1080", 200, 100, 0, "block", 4, "64 MiB", "overload, memory"),
]


def load() -> str:
    """The load average over 1, 5 and 15 minutes (the machine may be shared)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def cpu_flags() -> str:
    """Whether the CPU has AVX2 and AVX-512 (what the codecs' fast paths use)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next(
                (line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), []
            )
    except OSError:
        return "?"
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f"))


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
        "flags": cpu_flags(),
        "load_before": load(),
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
    for contender, size, frames, qframes, fps, on_full, producers, max_queue, what in E2E:
        n = qframes if quick else frames
        cmd = [sys.executable, "-m", "bench.e2e", "--contender", contender, "--size", size,
               "--frames", str(n), "--fps", str(fps), "--on-full", on_full,
               "--producers", str(producers), "--max-queue", max_queue]  # fmt: skip
        if what != "burst":
            cmd.append("--no-alone")  # the codec-alone figure goes beside the bursts
        print(f"  e2e: {contender:12s} {size:>9s} x{producers} {what} ({n} frames)", file=sys.stderr,
              flush=True)  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["what"] = what
        res["load"] = load()
        results.append(res)
    return results


def e2e_table(results: list[dict[str, Any]]) -> str:
    """Markdown: imagelog beside the codec alone (same frames, every core), in one run."""
    rows = [
        "| contender | frames | producers | mode | sustained frames/s | codec alone (all cores) "
        "| CPU per frame (imagelog's own) | log() p50 / p99 / max | bytes/frame (% raw) | dropped "
        "| peak RSS over the queue bound |",
        "|---|---|---:|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        mode = f"{r['what']}, {r['on_full']}" + (
            f" @ {r['paced_fps']:g} fps" if r["paced_fps"] else ""
        )
        if "overload" in r["what"]:
            mode += f", {r.get('max_queue_mb', 0):.0f} MiB queue"
        alone = f"{r['codec_fps']:,.0f} ({100 * r['vs_codec']:.0f}%)" if "codec_fps" in r else ""
        cpu = f"{_us(r['cpu_us_per_frame'])}" if "cpu_us_per_frame" in r else ""
        if "overhead_us" in r:
            cpu += f" ({_us(r['overhead_us'])})"
        over = (
            f"{r['rss_over_bound_mb']:+.0f} MB"
            if r["contender"] != "seed"
            else f"{r['peak_rss_mb']:.0f} MB"
        )
        rows.append(
            f"| {'seed design' if r['contender'] == 'seed' else r['contender']} | "
            f"{r['size']} x {r['frames']} | {r.get('producers', 1)} | {mode} | "
            f"{r['sustained_fps']:,.1f} | {alone} | {cpu} | "
            f"{_us(r['p50_us'])} / {_us(r['p99_us'])} / {_us(r['max_us'])} | "
            f"{r['bytes_per_frame'] / 1e3:,.0f} kB ({100 * r['bytes_per_frame'] / r['raw_bytes_per_frame']:.0f}%) | "
            f"{r['dropped']} | {over} |"
        )
    return "\n".join(rows)


def _us(v: float) -> str:
    return f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    """Run the suite."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer frames (for a smoke run)")
    p.add_argument(
        "--only",
        default="e2e,peers,codecs,pixfmt,storage,s3,query,view,ring,select,fleet,tiers,scaling",
    )
    p.add_argument("--out", default="bench/results/latest.json")
    a = p.parse_args(argv)
    wanted = a.only.split(",")
    report: dict[str, Any] = {"machine": machine(), "quick": a.quick}
    sections: list[str] = []
    m = report["machine"]
    sections.append(
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['flags']}), {m['system']}, "
        f"Python {m['python']}, numpy {m['numpy']}, Pillow {m['pillow']}, "
        f"imagecodecs {m['imagecodecs']} ({m['date']}; load average {m['load_before']})."
    )
    if "e2e" in wanted:
        report["e2e"] = run_e2e(a.quick)
        sections.append("## End to end: the seed design vs imagelog\n\n" + e2e_table(report["e2e"]))
    for name in (
        "peers",
        "codecs",
        "pixfmt",
        "storage",
        "s3",
        "query",
        "view",
        "ring",
        "select",
        "fleet",
        "tiers",
        "scaling",
    ):
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

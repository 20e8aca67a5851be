"""How the pipeline scales with cores: the same 1080p bursts with 1, 2, 4, ... workers, each
beside the codec alone on as many threads, tiny frames on every core, and the JPEG XL -> PNG
conversion of an export with 1, 2, 4, ... workers beside decode + encode alone.

``python -m bench.scaling [--quick] [--max-workers N]``. On the project's 2-vCPU machine it
stops at 2 workers; on a bigger machine it goes up to every core. Figures are medians of the
rows that ran in one run; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def _counts(most: int) -> list[int]:
    """1, 2, 4, ... up to ``most``, and ``most`` itself."""
    out, n = [], 1
    while n < most:
        out.append(n)
        n *= 2
    return [*out, most]


def _child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def bursts(quick: bool, most: int) -> list[dict[str, Any]]:
    """1080p bursts (block: nothing dropped) per worker count, 1 and 4 producers."""
    rows = []
    for contender, per_worker in (("lossless", 40), ("preview", 100)):
        for workers in _counts(most):
            for producers in (1, 4):
                frames = max(60, per_worker * workers // (4 if quick else 1))
                print(f"  scaling: {contender} x{workers} workers, {producers} producer(s), "
                      f"{frames} frames", file=sys.stderr, flush=True)  # fmt: skip
                res = _child(["bench.e2e", "--contender", contender, "--size", "1920x1080",
                              "--frames", str(frames), "--producers", str(producers),
                              "--workers", str(workers)])  # fmt: skip
                rows.append({"contender": contender, "workers": workers, "producers": producers,
                             **res})  # fmt: skip
    return rows


def tiny(quick: bool) -> list[dict[str, Any]]:
    """128x128 frames on every core: imagelog beside MCAP (the peers that install here)."""
    frames = 2000 if quick else 10000
    rows = []
    for contender in ("imagelog-lossless", "imagelog-jpeg", "mcap-jpeg"):
        print(f"  scaling: tiny {contender} ({frames} frames)", file=sys.stderr, flush=True)
        rows.append(_child(["bench.peers", "--one", contender, "--frames", str(frames)]))
    return rows


def convert(quick: bool, most: int) -> list[dict[str, Any]]:
    """JPEG XL -> the export's default Pillow-readable format at 1080p, per worker count."""
    import imagelog
    from imagelog import codecs, export
    from imagelog.samples import CameraSimulator

    per = 4 if quick else 12  # frames per worker: each row takes about as long
    frames = per * most
    rows = []
    with tempfile.TemporaryDirectory(prefix="imagelog-bench-scaling-") as tmp:
        cam = CameraSimulator(1920, 1080, seed=3)
        bank = [cam.frame() for _ in range(8)]
        with imagelog.open(Path(tmp) / "run", format="jxl", workers=most) as log:
            for i in range(frames):
                log.log(bank[i % len(bank)], source="cam", i=i)
        run = imagelog.read(Path(tmp) / "run")
        jxl = codecs.get("jxl")
        data = [jxl.encode(f, jxl.params({})) for f in bank]
        for workers in _counts(most):
            n = max(2 * per, per * workers)

            def step(k: int, workers: int = workers, n: int = n) -> None:
                for i in range(k, n, workers):
                    export.encode_as(jxl.decode(data[i % len(data)]), "png")

            t = time.perf_counter()
            with ThreadPoolExecutor(workers) as ex:
                list(ex.map(step, range(workers)))
            alone = n / (time.perf_counter() - t)
            dest = Path(tmp) / f"out-{workers}"
            print(f"  scaling: convert x{workers} ({n} frames)", file=sys.stderr, flush=True)
            t = time.perf_counter()
            rep = export.export(run, dest, to="webdataset", workers=workers, image_format="png",
                                where=f"(meta->>'$.i')::int < {n}")  # fmt: skip
            fps = rep.samples / (time.perf_counter() - t)
            rows.append({"workers": workers, "frames": rep.samples, "fps": fps,
                         "alone_fps": alone, "vs_alone": fps / alone})  # fmt: skip
    return rows


def run(quick: bool, most: int | None = None) -> dict[str, Any]:
    """Every section (``make bench`` calls this)."""
    most = most or os.cpu_count() or 1
    return {
        "cores": os.cpu_count(),
        "bursts": bursts(quick, most),
        "tiny": tiny(quick),
        "convert": convert(quick, most),
    }


def table(res: dict[str, Any]) -> str:
    """Markdown: frames/s per worker count, and the share of the codec alone on as many threads."""
    rows = [
        f"## Scaling with cores ({res['cores']} cores)\n",
        "| 1080p burst | workers | producers | frames/s | codec alone, same threads | share "
        "| log() p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["bursts"]:
        if "error" in r:
            rows.append(f"| {r['contender']} | {r['workers']} | {r['producers']} | "
                        f"not run: {r['error']} | | | |")  # fmt: skip
            continue
        rows.append(
            f"| {r['contender']} | {r['workers']} | {r['producers']} | "
            f"{r['sustained_fps']:,.0f} | {r['codec_fps']:,.0f} | {r['vs_codec']:.2f} | "
            f"{r['p99_us'] / 1000:.1f} ms |"
        )
    rows += ["", "| 128x128 | frames/s | CPU per frame |", "|---|---:|---:|"]
    for r in res["tiny"]:
        if "error" in r:
            rows.append(f"| ? | not run: {r['error']} | |")
            continue
        rows.append(f"| {r['contender']} | {r['fps']:,.0f} | {r['cpu_us_per_frame']:.0f} µs |")
    rows += ["", "| JPEG XL -> PNG, 1080p | frames | frames/s | decode + encode alone | share |",
             "|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in res["convert"]:
        rows.append(f"| {r['workers']} workers | {r['frames']} | {r['fps']:,.1f} | "
                    f"{r['alone_fps']:,.1f} | {r['vs_alone']:.2f} |")  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--max-workers", type=int, default=0, help="0: every core")
    p.add_argument("--out", default="", help="also write the JSON here")
    a = p.parse_args(argv)
    res = run(a.quick, a.max_workers or None)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

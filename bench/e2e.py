"""End-to-end runs of one contender in this process: the caller's latency, sustained frames/s,
bytes per frame and peak RSS. ``python -m bench.e2e --contender lossless --size 1920x1080``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _folder_bytes(path: Path) -> tuple[int, int]:
    total = count = 0
    for p in path.rglob("*"):
        if p.is_file() and p.suffix not in (".jsonl", ".log", ".json"):
            total += p.stat().st_size
            count += 1
    return total, count


def _percentiles(ns: list[int]) -> dict[str, float]:
    us = sorted(x / 1000 for x in ns)
    if not us:
        return {"p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0}
    return {
        "p50_us": statistics.median(us),
        "p99_us": us[min(len(us) - 1, int(len(us) * 0.99))],
        "max_us": us[-1],
    }


def frames_bank(width: int, height: int, n: int = 8) -> list[np.ndarray[Any, Any]]:
    """A few camera-like frames, made before timing starts and cycled (the camera is not measured)."""
    from imagelog.samples import CameraSimulator

    cam = CameraSimulator(width, height, seed=1)
    return [cam.frame() for _ in range(n)]


def run_contender(
    contender: str, width: int, height: int, frames: int, fps: float, on_full: str, max_queue: str
) -> dict[str, Any]:
    """Log ``frames`` frames (paced at ``fps``, or as fast as possible if 0) and measure."""
    bank = frames_bank(width, height)
    base_rss = _current_rss_mb()
    lat: list[int] = []
    with tempfile.TemporaryDirectory(prefix="imagelog-bench-") as tmp:
        folder = Path(tmp) / "run"
        folder.mkdir()
        period = 1.0 / fps if fps else 0.0
        if contender == "seed":
            from bench.seed import SeedLogger

            seed = SeedLogger(str(folder), (width, height))
            t0 = time.perf_counter()
            for i in range(frames):
                if period:
                    time.sleep(max(0.0, t0 + i * period - time.perf_counter()))
                a = time.perf_counter_ns()
                seed.log_image_async(bank[i % len(bank)].tobytes())
                lat.append(time.perf_counter_ns() - a)
            t_push = time.perf_counter() - t0
            seed.close()
            stats: dict[str, Any] = {"dropped": 0}
        else:
            import imagelog

            log = imagelog.open(
                folder, format=contender, on_full=on_full, max_queue_bytes=max_queue
            )
            t0 = time.perf_counter()
            for i in range(frames):
                if period:
                    time.sleep(max(0.0, t0 + i * period - time.perf_counter()))
                a = time.perf_counter_ns()
                log.log(bank[i % len(bank)], source="cam1")
                lat.append(time.perf_counter_ns() - a)
            t_push = time.perf_counter() - t0
            log.close()
            stats = log.stats()
        t_total = time.perf_counter() - t0
        nbytes, nfiles = _folder_bytes(folder)
    written = nfiles
    return {
        "contender": contender,
        "size": f"{width}x{height}",
        "frames": frames,
        "paced_fps": fps,
        "on_full": on_full if contender != "seed" else "unbounded",
        "written": written,
        "dropped": stats.get("dropped", 0),
        "push_s": t_push,
        "total_s": t_total,
        "sustained_fps": written / t_total if t_total else 0.0,
        "bytes_per_frame": nbytes / written if written else 0,
        "raw_bytes_per_frame": width * height * 3,
        "peak_rss_mb": _rss_mb(),
        "base_rss_mb": base_rss,
        **_percentiles(lat),
    }


def main(argv: list[str] | None = None) -> int:
    """Run one contender and print its result as JSON."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--contender", default="lossless", help="'seed' or an imagelog format/preset")
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--fps", type=float, default=0.0, help="pace the producer (0 = burst)")
    p.add_argument("--on-full", default="block")
    p.add_argument("--max-queue", default="256 MiB")
    a = p.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    res = run_contender(a.contender, w, h, a.frames, a.fps, a.on_full, a.max_queue)
    json.dump(res, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

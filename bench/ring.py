"""The ring (#14): trigger-to-first-write latency, persist speed of a 10 s window of 1080p at
60 fps, and the memory the ring holds against its bound. ``python -m bench.ring [--quick]``
(one process per figure set, so peak RSS is this process's own).

Method: frames are logged with ``captured_at`` 1/60 s apart as fast as the pipeline takes them
(``on_full="block"``), and ``flush()`` waits until every frame is encoded and held. Then one
``trigger(before="10s")`` saves the whole window: the latency is from the call to the first
image file written (an ``on_written`` hook), the persist time from the call until ``flush()``
returns (every frame of the window written and indexed). Never asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

T0 = 1_764_000_000 * 10**9


def _frames(width: int, height: int, n: int = 8) -> list[Any]:
    from imagelog.samples import CameraSimulator

    cam = CameraSimulator(width, height, seed=1)
    return [cam.frame() for _ in range(n)]


def window(fmt: str, seconds: float, fps: int, size: tuple[int, int]) -> dict[str, Any]:
    """Fill a ring with ``seconds`` of frames, then save all of it with one trigger."""
    import imagelog

    frames = _frames(*size)
    n = int(seconds * fps)
    first: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = imagelog.open(
            tmp, ring=f"{seconds + 5}s", ring_bytes="1536 MiB", max_queue_bytes="2 GiB",
            format=fmt,
        )  # fmt: skip
        log._pipeline.on_written.append(lambda rec: first or first.append(time.perf_counter()))
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        for i in range(n):
            log.log(frames[i % len(frames)], source="cam", captured_at=T0 + i * 10**9 // fps)
        log.flush()
        fill_s = time.perf_counter() - t0
        held = log.stats()
        cpu1 = time.process_time()
        t1 = time.perf_counter()
        log.trigger("bench", before=f"{seconds}s", at=T0 + (n - 1) * 10**9 // fps)
        call_s = time.perf_counter() - t1
        log.flush()
        persist_s = time.perf_counter() - t1
        cpu2 = time.process_time()
        s = log.stats()
        log.close()
    return {
        "format": fmt,
        "size": f"{size[0]}x{size[1]}",
        "frames": n,
        "fps": fps,
        "fill_s": fill_s,
        "fill_cpu_s": cpu1 - cpu0,
        "trigger_call_ms": call_s * 1e3,
        "first_write_ms": (first[0] - t1) * 1e3 if first else None,
        "persist_s": persist_s,
        "persist_cpu_s": cpu2 - cpu1,
        "persist_fps": s["triggered"] / persist_s,
        "persist_mb_s": s["bytes_written"] / persist_s / 1e6,
        "triggered": s["triggered"],
        "ring_bytes_held": held["ring_bytes"],
        "peak_ring_bytes": s["peak_ring_bytes"],
        "max_ring_bytes": s["max_ring_bytes"],
        "max_queue_bytes": s["max_queue_bytes"],
        "peak_queue_bytes": s["peak_queue_bytes"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def latency(fmt: str, size: tuple[int, int], triggers: int) -> dict[str, Any]:
    """Trigger-to-first-write latency with an idle pipeline: ``triggers`` small windows."""
    import imagelog

    frames = _frames(*size)
    got: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, imagelog.open(tmp, ring="1h", format=fmt) as log:
        log._pipeline.on_written.append(lambda rec: got.append(time.perf_counter()))
        for i in range(triggers * 10):
            log.log(frames[i % len(frames)], source="cam", captured_at=T0 + i * 10**9 // 60)
        log.flush()
        lat = []
        for k in range(triggers):
            got.clear()
            t = time.perf_counter()
            log.trigger("bench", before="0.1s", at=T0 + (k * 10 + 9) * 10**9 // 60)
            log.flush()
            lat.append((got[0] - t) * 1e3)
    return {
        "format": fmt,
        "size": f"{size[0]}x{size[1]}",
        "triggers": triggers,
        "p50_ms": statistics.median(lat),
        "max_ms": max(lat),
    }


def run(quick: bool) -> dict[str, Any]:
    """Each part in a fresh process."""
    out: dict[str, Any] = {"windows": [], "latency": []}
    seconds = "2" if quick else "10"
    for fmt in ("preview", "lossless"):
        cmd = [sys.executable, "-m", "bench.ring", "--part", "window", "--format", fmt,
               "--seconds", seconds]  # fmt: skip
        print(f"  ring: {fmt} 1080p x {seconds} s @ 60 fps", file=sys.stderr, flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out["windows"].append(json.loads(res.stdout.strip().splitlines()[-1]))
    cmd = [sys.executable, "-m", "bench.ring", "--part", "latency", "--triggers",
           "5" if quick else "20"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out["latency"].append(json.loads(res.stdout.strip().splitlines()[-1]))
    out["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return out


def table(res: dict[str, Any]) -> str:
    """Markdown."""
    rows = [
        "## Ring: save a window (one trigger, 1080p at 60 fps)",
        "",
        "| format | window | saved | fill (CPU) | trigger() call | first write | persist (CPU) "
        "| persist frames/s | MB/s | ring held / bound | peak queue / bound | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w in res["windows"]:
        rows.append(
            f"| {w['format']} | {w['frames']} frames ({w['frames'] / w['fps']:g} s) | "
            f"{w['triggered']} | "
            f"{w['fill_s']:.1f} s ({w['fill_cpu_s']:.1f} s) | {w['trigger_call_ms']:.1f} ms | "
            f"{w['first_write_ms']:.1f} ms | {w['persist_s']:.2f} s ({w['persist_cpu_s']:.2f} s) | "
            f"{w['persist_fps']:,.0f} | {w['persist_mb_s']:,.0f} | "
            f"{w['ring_bytes_held'] / 2**20:,.0f} / {w['max_ring_bytes'] / 2**20:,.0f} MiB | "
            f"{w['peak_queue_bytes'] / 2**20:,.0f} / {w['max_queue_bytes'] / 2**20:,.0f} MiB | "
            f"{w['peak_rss_mb']:,.0f} MB |"
        )
    rows += [
        "",
        "| trigger-to-first-write, idle pipeline | triggers | p50 | max |",
        "|---|---:|---:|---:|",
    ]
    for lat in res["latency"]:
        rows.append(
            f"| {lat['format']} {lat['size']}, 7-frame windows | {lat['triggers']} | "
            f"{lat['p50_ms']:.1f} ms | {lat['max_ms']:.1f} ms |"
        )
    rows.append(f"\nLoad average after: {res.get('load', '?')}.")
    return "\n".join(rows)


def main() -> int:
    """One part, JSON on stdout."""
    p = argparse.ArgumentParser(prog="python -m bench.ring", description=__doc__)
    p.add_argument("--part", choices=("window", "latency", "all"), default="all")
    p.add_argument("--format", default="preview")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--triggers", type=int, default=20)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.part == "window":
        res = window(a.format, a.seconds, 60, (1920, 1080))
    elif a.part == "latency":
        res = latency("preview", (640, 480), a.triggers)
    else:
        r = run(a.quick)
        print(table(r))
        res = r
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

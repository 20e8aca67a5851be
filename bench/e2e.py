"""End-to-end runs of one contender in this process: the caller's latency, sustained frames/s,
bytes per frame, CPU per frame, peak RSS over the queue bound, and the same codec alone on the
same frames on every core. ``python -m bench.e2e --contender lossless --size 1920x1080``.

Per-frame overhead = the process's CPU time (user + system, every thread) per written frame,
minus the codec-alone CPU time per frame: what imagelog itself costs around the codec.
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
        return {"p50_us": 0.0, "p99_us": 0.0, "max_us": 0.0, "over_1ms": 0, "over_2ms": 0}
    return {
        "p50_us": statistics.median(us),
        "p99_us": us[min(len(us) - 1, int(len(us) * 0.99))],
        "max_us": us[-1],
        "over_1ms": sum(x > 1000 for x in us),  # how many calls the tail is made of
        "over_2ms": sum(x > 2000 for x in us),
    }


def frames_bank(width: int, height: int, n: int = 8) -> list[np.ndarray[Any, Any]]:
    """A few camera-like frames, made before timing starts and cycled (the camera is not measured)."""
    from imagelog.samples import CameraSimulator

    cam = CameraSimulator(width, height, seed=1)
    return [cam.frame() for _ in range(n)]


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def codec_alone(
    contender: str, bank: list[np.ndarray[Any, Any]], frames: int, threads: int
) -> dict[str, float]:
    """The codec the contender resolves to, encoding the same frames on ``threads`` threads
    (every core): frames/s and CPU seconds per frame, with no imagelog around it."""
    from concurrent.futures import ThreadPoolExecutor

    from imagelog import codecs

    f = bank[0]
    dtype = {"B": "uint8", "H": "uint16", "f": "float32", "?": "bool"}[f.dtype.char]
    spec = contender
    if f.shape[0] * f.shape[1] < codecs.SMALL_FRAME_PIXELS:  # what log() picks for small frames
        spec = codecs.small_frame_spec(contender, dtype) or contender
    codec, params = codecs.resolve(spec, dtype=dtype, channels=f.shape[2] if f.ndim == 3 else 1)
    n = max(threads * 4, frames)

    def work(k: int) -> None:
        for i in range(k, n, threads):
            codec.encode(bank[i % len(bank)], params)

    codec.encode(bank[0], params)  # warm up (imports, tables)
    c0, t0 = _cpu_s(), time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(work, range(threads)))
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return {"codec_fps": n / wall, "codec_cpu_us": cpu / n * 1e6, "codec": codec.name}


def run_contender(
    contender: str,
    width: int,
    height: int,
    frames: int,
    fps: float,
    on_full: str,
    max_queue: str,
    producers: int = 1,
    alone: bool = True,
    workers: int = 0,
    worker_nice: int | None = None,
) -> dict[str, Any]:
    """Log ``frames`` frames from ``producers`` threads (each paced at ``fps``, or as fast as
    possible if 0) and measure; then the codec alone on the same frames, on every core (or on
    ``workers`` threads where imagelog is given that many workers)."""
    import threading

    bank = frames_bank(width, height)
    if contender != "seed":
        import imagelog  # imported before the baseline: the library is not the queue
        from imagelog.settings import parse_bytes

        max_queue_bytes = parse_bytes(max_queue)
    else:
        max_queue_bytes = 0
    base_rss = _current_rss_mb()
    lats: list[list[int]] = [[] for _ in range(producers)]
    with tempfile.TemporaryDirectory(prefix="imagelog-bench-") as tmp:
        folder = Path(tmp) / "run"
        folder.mkdir()
        period = 1.0 / fps if fps else 0.0
        c0 = _cpu_s()
        if contender == "seed":
            from bench.seed import SeedLogger

            seed = SeedLogger(str(folder), (width, height))
            lat = lats[0]
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
            nice = {} if worker_nice is None else {"worker_nice": worker_nice}
            log = imagelog.open(
                folder,
                format=contender,
                on_full=on_full,
                max_queue_bytes=max_queue,
                workers=workers,
                **nice,
            )
            go = threading.Barrier(producers + 1)

            def produce(p: int) -> None:
                lat = lats[p]
                go.wait()
                t0 = time.perf_counter()
                for i in range(p, frames, producers):
                    if period:
                        time.sleep(max(0.0, t0 + (i // producers) * period - time.perf_counter()))
                    a = time.perf_counter_ns()
                    log.log(bank[i % len(bank)], source=f"cam{p}")
                    lat.append(time.perf_counter_ns() - a)

            threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
            for t in threads:
                t.start()
            go.wait()
            t0 = time.perf_counter()
            for t in threads:
                t.join()
            t_push = time.perf_counter() - t0
            log.close()
            stats = log.stats()
        t_total = time.perf_counter() - t0
        cpu = _cpu_s() - c0
        nbytes, nfiles = _folder_bytes(folder)
    peak_rss = _rss_mb()
    written = stats.get("written", nfiles)
    out: dict[str, Any] = {
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "contender": contender,
        "size": f"{width}x{height}",
        "frames": frames,
        "producers": producers,
        "paced_fps": fps,
        "on_full": on_full if contender != "seed" else "unbounded",
        "written": written,
        "dropped": stats.get("dropped", 0),
        "failed": stats.get("failed", 0),
        "push_s": t_push,
        "total_s": t_total,
        "sustained_fps": written / t_total if t_total else 0.0,
        "bytes_per_frame": nbytes / nfiles if nfiles else 0,
        "raw_bytes_per_frame": width * height * 3,
        "cpu_us_per_frame": cpu / max(1, written) * 1e6,
        "peak_rss_mb": peak_rss,
        "base_rss_mb": base_rss,
        "max_queue_mb": max_queue_bytes / 2**20,
        "rss_over_bound_mb": peak_rss - base_rss - max_queue_bytes / 2**20,
        **_percentiles([x for lat in lats for x in lat]),
    }
    if alone and contender != "seed":
        threads = workers or os.cpu_count() or 1
        out.update(codec_alone(contender, bank, min(frames, 400), threads))
        out["workers"] = threads
        out["vs_codec"] = out["sustained_fps"] / out["codec_fps"]
        out["overhead_us"] = out["cpu_us_per_frame"] - out["codec_cpu_us"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one contender and print its result as JSON."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--contender", default="lossless", help="'seed' or an imagelog format/preset")
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--fps", type=float, default=0.0, help="pace the producer (0 = burst)")
    p.add_argument("--on-full", default="block")
    p.add_argument("--max-queue", default="256 MiB")
    p.add_argument("--producers", type=int, default=1, help="threads calling log()")
    p.add_argument("--no-alone", action="store_true", help="skip the codec-alone figure")
    p.add_argument("--workers", type=int, default=0, help="imagelog's workers (0: one per core)")
    p.add_argument("--worker-nice", type=int, default=None, help="imagelog's worker_nice")
    a = p.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    res = run_contender(
        a.contender,
        w,
        h,
        a.frames,
        a.fps,
        a.on_full,
        a.max_queue,
        a.producers,
        not a.no_alone,
        a.workers,
        a.worker_nice,
    )
    json.dump(res, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

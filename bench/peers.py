"""Peers side by side: the same tiny frames logged by imagelog, rerun and MCAP in one run.

``python -m bench.peers [--quick]``, or ``--one CONTENDER`` for one contender in this process.
Each contender runs in a fresh process, logs the same 128x128 camera frames as fast as it can
and stops its clock once its file(s) are closed: frames/s to durable (closed, not fsynced: no
contender fsyncs by default), the process's CPU per frame (caller and background threads),
``log()`` p50/p99 and bytes per frame. JPEG contenders encode with the same encoder and quality
(imagelog's ``preview``: JPEG quality 90); rerun and MCAP encode in the caller, imagelog in its
workers. The peers (``rerun-sdk``, ``mcap``) are the ``bench`` dependency group, installed by
``make bench``, not by ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: (contender, what it is)
CONTENDERS = [
    ("imagelog-lossless", "imagelog, lossless preset (TIFF+zstd for tiny frames), shards"),
    ("imagelog-lossless-files", "imagelog, lossless preset, a file per frame (shard_under=0)"),
    ("rerun-raw", "rerun-sdk: rr.Image (raw pixels) to an .rrd file"),
    ("imagelog-jpeg", "imagelog, preview preset (JPEG q90), shards"),
    ("imagelog-jpeg-files", "imagelog, preview preset (JPEG q90), a file per frame"),
    ("rerun-jpeg", "rerun-sdk: rr.EncodedImage (JPEG q90, encoded by the caller) to an .rrd"),
    ("mcap-jpeg", "mcap: JPEG q90 (encoded by the caller) as messages of an .mcap file"),
]


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _bank(size: int, n: int) -> list[np.ndarray[Any, Any]]:
    """``n`` distinct frames, made before the clock starts (repeated frames would let a
    contender that compresses its chunks fold them together)."""
    from imagelog.samples import CameraSimulator

    cam = CameraSimulator(size, size, seed=1)
    return [cam.frame() for _ in range(n)]


def _jpeg() -> Callable[[np.ndarray[Any, Any]], bytes]:
    from imagelog import codecs

    codec, params = codecs.resolve("preview", dtype="uint8", channels=3)
    return lambda frame: codec.encode(frame, params)


def one(contender: str, frames: int, size: int) -> dict[str, Any]:
    """Log ``frames`` frames with one contender in this process; its figures."""
    bank = _bank(size, frames)
    lat: list[int] = []
    with tempfile.TemporaryDirectory(prefix="imagelog-peers-") as tmp:
        out = Path(tmp) / "run"
        if contender.startswith("imagelog"):
            import imagelog

            fmt = "lossless" if "lossless" in contender else "preview"
            files = contender.endswith("-files")
            kw: dict[str, Any] = {"shard_under": 0 if files else "64KiB"}
            c0, t0 = _cpu_s(), time.perf_counter()
            log = imagelog.open(out, format=fmt, **kw)
            for i in range(frames):
                a = time.perf_counter_ns()
                log.log(bank[i], source="cam")
                lat.append(time.perf_counter_ns() - a)
            log.close()
            written = log.stats()["written"]
        elif contender.startswith("rerun"):
            import rerun as rr

            encode = _jpeg()
            c0, t0 = _cpu_s(), time.perf_counter()
            rec = rr.RecordingStream("imagelog-bench")
            rec.save(str(out.with_suffix(".rrd")))
            for i in range(frames):
                a = time.perf_counter_ns()
                rec.set_time("frame", sequence=i)
                if contender == "rerun-raw":
                    rec.log("cam", rr.Image(bank[i]))
                else:
                    rec.log("cam", rr.EncodedImage(contents=encode(bank[i]),
                                                   media_type="image/jpeg"))  # fmt: skip
                lat.append(time.perf_counter_ns() - a)
            rec.flush(timeout_sec=600)
            rec.disconnect()
            written = frames
        elif contender == "mcap-jpeg":
            from mcap.writer import Writer

            encode = _jpeg()
            c0, t0 = _cpu_s(), time.perf_counter()
            with open(out.with_suffix(".mcap"), "wb") as fh:
                w = Writer(fh)
                w.start(profile="", library="imagelog-bench")
                ch = w.register_channel("/cam", message_encoding="jpeg", schema_id=0)
                for i in range(frames):
                    a = time.perf_counter_ns()
                    now = time.time_ns()
                    w.add_message(ch, log_time=now, publish_time=now, data=encode(bank[i]))
                    lat.append(time.perf_counter_ns() - a)
                w.finish()
            written = frames
        else:
            raise SystemExit(f"unknown contender {contender!r}")
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
        nbytes = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    ns = np.array(lat, dtype=np.int64)
    return {
        "contender": contender,
        "size": f"{size}x{size}",
        "frames": frames,
        "written": written,
        "fps": written / wall,
        "cpu_us_per_frame": cpu / frames * 1e6,
        "p50_us": float(np.percentile(ns, 50)) / 1e3,
        "p99_us": float(np.percentile(ns, 99)) / 1e3,
        "bytes_per_frame": nbytes / max(1, written),
    }


def run(quick: bool, rounds: int | None = None) -> dict[str, Any]:
    """Every contender, each in a fresh process, one after the other, ``rounds`` times over
    (interleaved, so a busy moment of a shared machine hits them alike); the median of each
    figure is reported."""
    frames = 1000 if quick else 3000
    rounds = rounds or (1 if quick else 3)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c, _ in CONTENDERS}
    errors: dict[str, str] = {}
    for r in range(rounds):
        for contender, _ in CONTENDERS:
            if contender in errors:
                continue
            print(f"  peers: {contender} ({frames} frames, round {r + 1} of {rounds})",
                  file=sys.stderr, flush=True)  # fmt: skip
            cmd = [sys.executable, "-m", "bench.peers", "--one", contender, "--frames", str(frames)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                errors[contender] = (out.stderr.strip().splitlines() or ["failed"])[-1]
                continue
            runs[contender].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results: list[dict[str, Any]] = []
    for contender, _ in CONTENDERS:
        if contender in errors:
            results.append({"contender": contender, "error": errors[contender]})
            continue
        got = runs[contender]
        median = {k: float(np.median([g[k] for g in got])) for k in _FIGURES}
        results.append({**got[0], **median, "rounds": len(got)})
    return {"frames": frames, "rounds": rounds, "cores": os.cpu_count(), "results": results}


_FIGURES = ("fps", "cpu_us_per_frame", "p50_us", "p99_us", "bytes_per_frame")


def table(res: dict[str, Any]) -> str:
    """Markdown: the peers beside imagelog, and the ratios the issue asks for."""
    rows = [
        f"## Peers: 128x128 x {res['frames']}, {res['cores']} cores, median of "
        f"{res.get('rounds', 1)} interleaved round(s)\n",
        "| contender | frames/s to durable | CPU per frame | log() p50 / p99 | bytes/frame |",
        "|---|---:|---:|---|---:|",
    ]
    by = {r["contender"]: r for r in res["results"]}
    for r in res["results"]:
        if "error" in r:
            rows.append(f"| {r['contender']} | not run: {r['error']} | | | |")
            continue
        rows.append(
            f"| {r['contender']} | {r['fps']:,.0f} | {r['cpu_us_per_frame']:,.0f} µs | "
            f"{r['p50_us']:,.0f} / {r['p99_us']:,.0f} µs | {r['bytes_per_frame']:,.0f} |"
        )
    for ours, peer in (("imagelog-lossless", "rerun-raw"), ("imagelog-jpeg", "mcap-jpeg")):
        if "fps" in by.get(ours, {}) and "fps" in by.get(peer, {}):
            rows.append(f"\n{ours} / {peer}: {by[ours]['fps'] / by[peer]['fps']:.2f}x")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    p.add_argument("--one", help="run one contender in this process, print its JSON")
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=0, help="rounds over every contender (0: 3)")
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.one, a.frames, a.size)))
        return 0
    print(table(run(a.quick, a.rounds or None)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

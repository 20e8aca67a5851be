"""Retention tiers (#23): what the example ladder keeps of 30 days of a 1080p camera at 10 fps,
and the CPU a tier pass costs per camera-hour. ``python -m bench.tiers [--quick]``.

The ladder: ``1d`` JPEG (``preview``), ``7d`` one frame per 10 s, ``30d`` 512-pixel thumbnails,
``365d`` delete. Method (never asserts a timing):

- **Real images, a sample.** Camera-like 1080p frames (``CameraSimulator``: the bundled photos,
  panned, with sensor noise) are logged lossless 0.1 s apart (log time, an injected clock); a
  pass ``--as-of`` 2 days later re-encodes them; a second run takes them to thumbnails. Bytes
  per frame at each tier and CPU per frame (process time: codec threads included) come from
  these passes.
- **Synthetic index, the volume.** One camera-hour of index lines (36,000 ``logged`` records and
  their ``tiered`` events, made from the sample's records) is thinned by a pass ``--as-of`` 8 days
  later: the CPU of thinning an hour (reading it, the ``thinned`` summary, 35,640 deletes).
- **30 days at 1080p** are then counted from those figures: the last day lossless (24 x 36,000
  frames), days 2-7 JPEG, days 8-30 one frame per 10 s, plus the index lines, which stay.
- **A scaled real run checks the count**: 30 simulated days of a 480x270 camera at 10 fps, 10 s
  a day (so thinning keeps 1 frame in 100, as at full scale), through 30 daily passes; its
  measured bytes against the same count made from its own per-frame sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

T0 = 1_764_000_000 * 10**9
DAY = 86_400 * 10**9
FPS = 10
HOUR_FRAMES = 3600 * FPS


def _ladder(thumb_only: bool = False) -> Any:
    from imagelog.tiers import Tier, ladders_of

    if thumb_only:
        return ladders_of([Tier(after="1d", format="preview"), Tier(after="30d", thumbnail=512)])
    return ladders_of([
        Tier(after="1d", format="preview"),
        Tier(after="7d", thin="10s"),
        Tier(after="30d", thumbnail=512),
        Tier(after="365d", delete=True),
    ])  # fmt: skip


def _log(path: str, frames: list[Any], times_ns: list[int]) -> list[str]:
    from imagelog.logger import ImageLog
    from imagelog.settings import Settings
    from imagelog.stores import make_store

    clock = [times_ns[0]]
    ids = []
    with ImageLog(
        make_store(path, create=True), Settings.from_kwargs(), clock=lambda: clock[0]
    ) as log:
        for frame, t in zip(frames, times_ns, strict=True):
            clock[0] = t
            ids.append(log.log(frame, source="cam"))
            if len(ids) % 50 == 0:
                log.flush()
        log.flush()
    return ids


def _image_bytes(path: str) -> int:
    return sum(p.stat().st_size for p in Path(path, "images").rglob("*") if p.is_file())


def _index_bytes(path: str) -> int:
    return sum(p.stat().st_size for p in Path(path, "index").rglob("*") if p.is_file())


def _pass(path: str, ladders: Any, now_ns: int) -> tuple[Any, float]:
    from imagelog.stores import make_store
    from imagelog.tiers import run_pass

    t = time.process_time()
    report = run_pass(make_store(path), ladders, now_ns=now_ns)
    return report, time.process_time() - t


def sample(n: int, tmp: str) -> dict[str, Any]:
    """1080p: bytes per frame lossless, as JPEG and as a thumbnail; CPU per frame of each step."""
    import imagelog
    from imagelog.samples import CameraSimulator

    cam = CameraSimulator(1920, 1080, seed=3)
    frames = [cam.frame() for _ in range(n)]
    times = [T0 + i * 10**9 // FPS for i in range(n)]
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    _log(a, frames, times)
    shutil.copytree(a, b)
    lossless = _image_bytes(a) / n
    codecs = _codec_cpu(frames[0])  # first: loads and warms the codecs
    _pass(a, _ladder(), T0)  # nothing is due: loads the records engine (one-time imports)
    rep, cpu = _pass(a, _ladder(), T0 + 2 * DAY)
    assert rep.tiered == n, rep
    _, fixed = _pass(a, _ladder(), T0 + 2 * DAY)  # the same reads, nothing left to do
    jpeg = _image_bytes(a) / n
    _pass(b, _ladder(thumb_only=True), T0 + 2 * DAY)
    rep2, cpu2 = _pass(b, _ladder(thumb_only=True), T0 + 31 * DAY)
    assert rep2.tiered == n, rep2
    _, fixed2 = _pass(b, _ladder(thumb_only=True), T0 + 31 * DAY)
    thumb = _image_bytes(b) / n
    thumbs = list(imagelog.read(b).records())
    logged_line = _index_bytes(a) / n  # a logged line and a tiered event per frame
    return {
        "frames": n,
        "lossless_bytes": lossless,
        "jpeg_bytes": jpeg,
        "thumb_bytes": thumb,
        "index_bytes_per_frame": logged_line,
        "reencode_cpu_s": max(0.0, cpu - fixed) / n,
        "thumb_cpu_s": max(0.0, cpu2 - fixed2) / n,
        "pass_fixed_cpu_s": fixed,
        "thumb_size": [thumbs[0]["image"]["width"], thumbs[0]["image"]["height"]],
        **codecs,
        "_template": a,
    }


def _codec_cpu(frame: Any, n: int = 10) -> dict[str, float]:
    """CPU of the codecs alone, per 1080p frame: JPEG XL lossless decode, JPEG q90 encode."""
    from imagelog import codecs

    jxl, jp = codecs.resolve("lossless", dtype="uint8", channels=3)
    jpeg, qp = codecs.resolve("preview", dtype="uint8", channels=3)
    data = jxl.encode(frame, jp)
    t = time.process_time()
    for _ in range(n):
        arr = jxl.decode(data)
    mid = time.process_time()
    for _ in range(n):
        jpeg.encode(arr, qp)
    end = time.process_time()
    return {"jxl_decode_cpu_s": (mid - t) / n, "jpeg_encode_cpu_s": (end - mid) / n}


def thin_hour(template: str, tmp: str, frames: int = HOUR_FRAMES) -> dict[str, Any]:
    """Thin one camera-hour of synthetic index lines (no image files needed: thinning reads
    none); CPU of the pass."""
    import imagelog
    from imagelog.ids import uuid7
    from imagelog.layout import hour_of, image_key, segment_key
    from imagelog.record import dumps, iso_utc, tiered_record

    path = os.path.join(tmp, "hour")
    events = list(imagelog.read(template).records())
    rec0 = events[0]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.join(path, "index"))
    shutil.copy(os.path.join(template, "imagelog.json"), path)
    start = T0 + 3600 * 10**9  # an hour of its own
    logged, tiered = [], []
    for i in range(frames):
        t = start + i * 10**9 // FPS
        rec = json.loads(json.dumps(rec0))
        rid = uuid7(t)
        rec["image"]["id"], rec["image"]["seq"] = rid, i + 1
        rec["@timestamp"] = rec["event"]["created"] = iso_utc(t)
        rec["file"]["path"] = image_key(t, "cam", i + 1, "synthetic-1", "jpg")
        logged.append(dumps(rec))
        tiered.append(dumps(tiered_record(rec, now_ns=start + DAY + DAY // 2, rid=uuid7(t),
                                          writer="tier-1", kind="format", step=1, after="1d",
                                          file=rec["file"], image=rec["image"])))  # fmt: skip
    hour = hour_of(start)
    Path(path, segment_key(hour, "synthetic-1")).write_text("\n".join(logged) + "\n")
    Path(path, segment_key(hour, "tier-1")).write_text("\n".join(tiered) + "\n")
    rep, cpu = _pass(path, _ladder(), start + 8 * DAY)
    return {"frames": frames, "thinned": rep.thinned, "cpu_s": cpu,
            "index_bytes": _index_bytes(path)}  # fmt: skip


def scaled_run(days: int, seconds: int, tmp: str) -> dict[str, Any]:
    """30 simulated days of a 480x270 camera at 10 fps, ``seconds`` a day, tiered daily."""
    from imagelog.samples import CameraSimulator

    cam = CameraSimulator(480, 270, seed=4)
    bank = [cam.frame() for _ in range(16)]
    per_day = seconds * FPS
    path = os.path.join(tmp, "scaled")
    times = [T0 + d * DAY + i * 10**9 // FPS for d in range(days) for i in range(per_day)]
    frames = [bank[(i * 7) % len(bank)] for i in range(len(times))]
    _log(path, frames, times)
    lossless_total = _image_bytes(path)
    per_lossless = lossless_total / len(times)
    cpu = 0.0
    last = None
    for d in range(1, days):  # a daily cron: imagelog tier RUN; the last day stays young
        last, c = _pass(path, _ladder(), T0 + d * DAY + DAY // 2)
        cpu += c
    assert last is not None
    # the same count as for 1080p, from this run's own sizes
    import imagelog

    recs = list(imagelog.read(path).records())
    jpeg = [r["file"]["size"] for r in recs if r["image"]["format"] == "jpeg"]
    per_jpeg = sum(jpeg) / max(1, len(jpeg))
    return {
        "days": days,
        "frames": len(times),
        "lossless_bytes": lossless_total,
        "tiered_bytes": _image_bytes(path),
        "index_bytes": _index_bytes(path),
        "records_left": len(recs),
        "per_lossless": per_lossless,
        "per_jpeg": per_jpeg,
        "cpu_s": cpu,
    }


def count_30_days(s: dict[str, Any], thin_cpu: float) -> dict[str, Any]:
    """30 days of 1080p at 10 fps, from the measured per-frame figures."""
    hours = 30 * 24
    frames = hours * HOUR_FRAMES
    keep_all = frames * s["lossless_bytes"]
    day1 = 24 * HOUR_FRAMES * s["lossless_bytes"]
    days2_7 = 6 * 24 * HOUR_FRAMES * s["jpeg_bytes"]
    days8_30 = 23 * 24 * (HOUR_FRAMES // 100) * s["jpeg_bytes"]
    index = frames * s["index_bytes_per_frame"]
    tiered = day1 + days2_7 + days8_30 + index
    cam_hour_cpu = (HOUR_FRAMES * s["reencode_cpu_s"] + thin_cpu
                    + HOUR_FRAMES // 100 * s["thumb_cpu_s"])  # fmt: skip
    return {
        "keep_all_bytes": keep_all,
        "tiered_bytes": tiered,
        "parts": {
            "day 1 lossless": day1,
            "days 2-7 JPEG": days2_7,
            "days 8-30 JPEG, 1 per 10 s": days8_30,
            "index (all lines stay)": index,
        },
        "ratio": tiered / keep_all,
        "cpu_s_per_camera_hour": cam_hour_cpu,
        "cores_for_4_cameras": 4 * cam_hour_cpu / 3600,
        "cameras_per_2_cores": 2 * 3600 / cam_hour_cpu,
    }


def run(quick: bool) -> dict[str, Any]:
    """Every part, in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="imagelog-bench-tiers-") as tmp:
        print("  tiers: 1080p sample", file=sys.stderr, flush=True)
        s = sample(12 if quick else 60, tmp)
        print("  tiers: one synthetic camera-hour, thinned", file=sys.stderr, flush=True)
        th = thin_hour(s.pop("_template"), tmp, HOUR_FRAMES // 10 if quick else HOUR_FRAMES)
        thin_cpu = th["cpu_s"] * HOUR_FRAMES / th["frames"]
        print("  tiers: scaled 30-day run", file=sys.stderr, flush=True)
        sc = scaled_run(8 if quick else 30, 10, tmp)
    return {"sample": s, "thin_hour": th, "thin_cpu_per_hour": thin_cpu,
            "full": count_30_days(s, thin_cpu), "scaled": sc,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}  # fmt: skip


def _gb(n: float) -> str:
    if n < 1e9:
        return f"{n / 1e6:,.1f} MB"
    return f"{n / 1e9:,.1f} GB" if n < 1e12 else f"{n / 1e12:,.2f} TB"


def table(res: dict[str, Any]) -> str:
    """Markdown."""
    s, f, sc, th = res["sample"], res["full"], res["scaled"], res["thin_hour"]
    rows = [
        "## Retention tiers: 30 days of a 1080p camera at 10 fps, the example ladder",
        "",
        "| tier | bytes per frame (1080p) | CPU per frame |",
        "|---|---:|---:|",
        f"| as logged (lossless, JPEG XL effort 1) | {s['lossless_bytes'] / 1e6:.2f} MB | |",
        f"| after 1 day: JPEG (`preview`) | {s['jpeg_bytes'] / 1e3:.0f} kB | "
        f"{s['reencode_cpu_s'] * 1e3:.1f} ms |",
        f"| after 30 days: thumbnail {s['thumb_size'][0]}x{s['thumb_size'][1]} | "
        f"{s['thumb_bytes'] / 1e3:.1f} kB | {s['thumb_cpu_s'] * 1e3:.1f} ms |",
        f"| index lines per frame (logged + tiered) | {s['index_bytes_per_frame']:.0f} B | |",
        "",
        f"Of a re-encode, the codecs alone take {s['jxl_decode_cpu_s'] * 1e3:.1f} ms (JPEG XL "
        f"decode) + {s['jpeg_encode_cpu_s'] * 1e3:.1f} ms (JPEG encode); a pass's fixed cost "
        f"(reading the index) was {s['pass_fixed_cpu_s']:.2f} s, left out of the per-frame "
        "figures (CPU is process time: DuckDB's threads count).",
        "",
        f"Thinning one camera-hour ({th['frames']:,} synthetic index lines, {th['thinned']:,} "
        f"frames removed): {res['thin_cpu_per_hour']:.1f} s CPU.",
        "",
        "| 30 days at 1080p, 10 fps | bytes |",
        "|---|---:|",
        f"| keep everything lossless | {_gb(f['keep_all_bytes'])} |",
    ]
    for name, n in f["parts"].items():
        rows.append(f"| {name} | {_gb(n)} |")
    rows += [
        f"| **with the ladder** | **{_gb(f['tiered_bytes'])} ({f['ratio']:.1%})** |",
        "",
        f"CPU per camera-hour (36,000 re-encodes, thinning, 360 thumbnails): "
        f"{f['cpu_s_per_camera_hour']:,.0f} s, so 4 cameras need "
        f"{f['cores_for_4_cameras']:.2f} cores and 2 cores keep up with "
        f"{f['cameras_per_2_cores']:.1f} cameras.",
        "",
        f"Scaled real run ({sc['days']} days of a 480x270 camera at 10 fps, 10 s a day, "
        f"{sc['frames']:,} frames, one pass a day): lossless {_gb(sc['lossless_bytes'])}, "
        f"tiered {_gb(sc['tiered_bytes'])} of images + {_gb(sc['index_bytes'])} of index "
        f"({(sc['tiered_bytes'] + sc['index_bytes']) / sc['lossless_bytes']:.1%}); "
        f"{sc['records_left']} records left; {sc['cpu_s']:.1f} s CPU in all passes.",
        f"\nLoad average after: {res.get('load', '?')}.",
    ]
    return "\n".join(rows)


def main() -> int:
    """Run, print the table, then the JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.tiers", description=__doc__)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    r = run(a.quick)
    print(table(r))
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

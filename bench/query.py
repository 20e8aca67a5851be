"""Reading a big run: stats, ls, filtered records(), filter + count; compaction; export.

``python -m bench.query [--records 1000000] [--records 10000000] [--dir /tmp/...]``

A run of N index lines is made synthetically (4 cameras at 15 fps: one 60 fps stream, so 216,000
lines an hour), each line a real record of one of a few real 1080p frames (imagelog's camera
simulator) with its own id, time, source and ``meta``. Every measurement runs in a fresh child
process (time and peak RSS are that process's); first over the raw JSON Lines, then after
``compact``. Benchmarks measure; they never assert.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import imagelog
from imagelog.index.summary import HourSummary
from imagelog.layout import summary_key

FPS = 60
SOURCES = 4
START_S = 1_764_547_200  # 2025-12-01T00:00:00Z

# what each measurement does, in the child (``--measure NAME RUN``)
MEASURES = {
    "stats": "imagelog stats RUN",
    "ls": "imagelog ls RUN -n 20",
    "first": "first 10 of records(source='cam2')",
    "count": "filter + count (SQL)",
}


def _measure(name: str, run_dir: str) -> dict[str, Any]:
    from itertools import islice

    from imagelog.cli import newest, summarise

    run = imagelog.read(run_dir)
    t = time.perf_counter()
    if name == "stats":
        out: Any = summarise(run)["images"]
    elif name == "ls":
        out = len(newest(run, 20))
    elif name == "first":
        out = len(list(islice(run.records(source="cam2"), 10)))
    elif name == "count":
        out = run.query(
            "select count(*), sum(bytes) from records "
            "where source = 'cam2' and (meta->>'$.exposure')::int > 500"
        ).fetchall()[0][0]
    elif name == "compact":
        from imagelog.compact import compact

        rep = compact(run.store, now_ns=2**62)
        out = [(c.records, c.seconds, c.bytes_in, c.bytes_out) for c in rep.compacted]
    else:
        raise SystemExit(f"unknown measure {name}")
    return {"seconds": time.perf_counter() - t, "result": out}


def child(args: list[str]) -> dict[str, Any]:
    """Run ``python -m bench.query ARGS`` in a fresh process: its JSON line plus peak RSS."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, "-m", "bench.query", *args], stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise RuntimeError(f"bench.query {' '.join(args)} failed ({proc.returncode})")
        out.seek(0)
        res: dict[str, Any] = json.loads(out.read().decode().strip().splitlines()[-1])
    res["peak_rss_mb"] = usage.ru_maxrss / 1024
    return res


def _real_records(folder: Path) -> list[dict[str, Any]]:
    """Eight real 1080p frames, four JPEG (preview) and four lossless JPEG XL: their records."""
    from imagelog.samples import CameraSimulator

    cam = CameraSimulator(1920, 1080, seed=11)
    with imagelog.open(folder) as log:
        for i in range(8):
            log.log(cam.frame(), source="cam0", format="jpeg" if i < 4 else "jxl")
    return list(imagelog.read(folder).records())


def make_run(
    folder: Path,
    n: int,
    real: list[dict[str, Any]] | None = None,
    *,
    fmt: str = "jpeg",
    start_s: int = START_S,
) -> list[dict[str, Any]]:
    """A run folder with n synthetic index lines (hourly segments) over a few real images."""
    real = real if real is not None else _real_records(folder)
    jpegs = [r for r in real if r["image"]["format"] == fmt]
    templates = []
    for r in jpegs:
        rec = json.loads(json.dumps(r))
        rec["@timestamp"] = rec["event"]["created"] = "@TS@"
        rec["image"].update(id="@ID@", seq=0, source="@SRC@")
        rec["meta"] = "@META@"
        line = json.dumps(rec, separators=(",", ":"))
        line = line.replace('"seq":0', '"seq":@SEQ@').replace('"@META@"', "@META@")
        templates.append(line.replace("{", "{{").replace("}", "}}")
                         .replace("@TS@", "{ts}").replace("@ID@", "{rid}").replace("@SEQ@", "{seq}")
                         .replace("@SRC@", "{src}").replace("@META@", "{meta}") + "\n")  # fmt: skip
    writer = real[0]["imagelog"]["writer"]
    (folder / "index").mkdir(parents=True, exist_ok=True)  # the real records' lines stay
    step_us = 1_000_000 // FPS
    fh = None
    hour = ""
    seconds: dict[int, str] = {}
    summary: HourSummary | None = None
    sizes = [int(r["file"]["size"]) for r in jpegs]

    def close_hour() -> None:
        # what the writer leaves when it closes an hour (index/summary.py); the last hour
        # stays open, as in a live run
        if fh is not None:
            fh.close()
        if summary is not None:
            (folder / summary_key(summary.hour, writer)).write_bytes(summary.dumps())

    for i in range(n):
        us = start_s * 1_000_000 + i * step_us
        sec, frac = divmod(us, 1_000_000)
        base = seconds.get(sec)
        if base is None:
            seconds.clear()
            base = seconds[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        if base[:13] != hour:
            close_hour()
            hour = base[:13]
            summary = HourSummary(hour, writer)
            fh = open(folder / "index" / f"{hour}_{writer}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        ms = us // 1000
        rid = f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7{(i >> 12) & 0xFFF:03x}-8{i & 0xFFF:03x}-{i:012x}"
        meta = (f'{{"exposure":{i % 1000},"frame":{i}}}' if i % 3
                else f'{{"exposure":{i % 1000},"defect":{{"kind":"scratch","score":0.{i % 97}}}}}')  # fmt: skip
        assert fh is not None
        assert summary is not None
        ts = f"{base}.{frac:06d}Z"
        line = templates[i % len(templates)].format(ts=ts, rid=rid, seq=i,
                                                    src=f"cam{i % SOURCES}", meta=meta)  # fmt: skip
        fh.write(line)
        row = summary.rows.setdefault((f"cam{i % SOURCES}", "logged", None, fmt), [0, 0, ts, ts, 0])
        row[0] += 1
        row[1] += sizes[i % len(templates)]
        row[3] = ts
        summary.lines += 1
        summary.size += len(line.encode())
        summary.ids = [summary.ids[0] if summary.ids else rid, rid]
    if fh is not None:
        fh.close()
    return real


def reads(run_dir: Path, n: int) -> dict[str, Any]:
    """Every read measurement, raw then compacted, plus the compaction itself."""
    size = sum(p.stat().st_size for p in (run_dir / "index").glob("*.jsonl"))
    res: dict[str, Any] = {"records": n, "jsonl_bytes": size, "raw": {}, "compacted": {}}
    for name in MEASURES:
        print(f"  query: {n:,} raw {name}", file=sys.stderr, flush=True)
        res["raw"][name] = child(["--measure", name, str(run_dir)])
    print(f"  query: {n:,} compact", file=sys.stderr, flush=True)
    res["compact"] = child(["--measure", "compact", str(run_dir)])
    res["parquet_bytes"] = sum(p.stat().st_size for p in (run_dir / "index").rglob("*.parquet"))
    for name in MEASURES:
        print(f"  query: {n:,} compacted {name}", file=sys.stderr, flush=True)
        res["compacted"][name] = child(["--measure", name, str(run_dir)])
    return res


def _export(run_dir: str, to: str, where: str, out: str) -> dict[str, Any]:
    from bench.fleet import _cpu
    from imagelog.export import export

    t, cpu = time.perf_counter(), _cpu()
    rep = export(imagelog.read(run_dir), out, to=to, where=where)
    return {"seconds": time.perf_counter() - t, "samples": rep.samples, "bytes": rep.bytes,
            "converted": rep.converted, "cpu_s": _cpu() - cpu}  # fmt: skip


def _alone(run_dir: str, where: str, frames: str) -> dict[str, Any]:
    """Decode + PNG-encode the images of the ``where`` records from memory on two threads, as
    many frames as the export converted, and nothing else (what the export could reach)."""
    from bench.fleet import _decode_encode_alone
    from imagelog import _png

    run = imagelog.read(run_dir)
    recs = {r["file"]["path"]: r for r in run.records(where=where)}
    datas = [run.read_bytes(r) for r in recs.values()]
    n = int(frames)
    fps, fps_2cores = _decode_encode_alone([datas[i % len(datas)] for i in range(n)], _png.encode)
    return {"fps": fps, "fps_2cores": fps_2cores, "frames": n, "png": _png.backend()}


def exports(folder: Path, real: list[dict[str, Any]], frames: int) -> list[dict[str, Any]]:
    """10,000 1080p frames to each target (JPEG: copied), and JPEG XL ones (converted to PNG)."""
    make_run(folder, frames, real)
    out = []
    for to in ("imagefolder", "webdataset", "parquet"):
        dest = folder.parent / f"export-{to}"
        print(f"  query: export {frames:,} to {to}", file=sys.stderr, flush=True)
        res = child(["--export", str(folder), to, "true", str(dest)])
        res.update(to=to, what="1080p JPEG, copied")
        out.append(res)
        shutil.rmtree(dest, ignore_errors=True)
    # the conversion path: lossless JPEG XL frames (Pillow cannot read them), ten days later
    make_run(folder, frames // 50, real, fmt="jxl", start_s=START_S + 10 * 86400)
    dest = folder.parent / "export-jxl"
    print("  query: export JPEG XL to imagefolder", file=sys.stderr, flush=True)
    res = child(["--export", str(folder), "imagefolder", "format = 'jxl'", str(dest)])
    res.update(to="imagefolder", what="1080p JPEG XL, converted to PNG")
    out.append(res)
    shutil.rmtree(dest, ignore_errors=True)
    print("  query: decode + encode alone", file=sys.stderr, flush=True)
    res["alone"] = child(["--alone", str(folder), "format = 'jxl'", str(res["samples"])])
    return out


def run(quick: bool, sizes: list[int] | None = None, base: Path | None = None) -> dict[str, Any]:
    """The whole benchmark (``make bench`` calls this)."""
    sizes = sizes or ([200_000] if quick else [1_000_000])
    base = Path(tempfile.mkdtemp(prefix="imagelog-bench-query-", dir=base))
    results: dict[str, Any] = {"runs": [], "exports": []}
    try:
        real: list[dict[str, Any]] | None = None
        for n in sizes:
            folder = base / f"run-{n}"
            folder.mkdir(parents=True, exist_ok=True)
            print(f"  query: making {n:,} index lines", file=sys.stderr, flush=True)
            real = make_run(folder, n, real)
            results["runs"].append(reads(folder, n))
            if n != sizes[-1]:
                shutil.rmtree(folder)
        assert real is not None
        folder = base / f"run-{sizes[-1]}"  # its images and real records; a new index
        shutil.rmtree(folder / "index")
        (folder / "index").mkdir()
        real_hour = real[0]["event"]["created"][:13]
        (folder / "index" / f"{real_hour}_{real[0]['imagelog']['writer']}.jsonl").write_text(
            "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in real)
        )
        results["exports"] = exports(folder, real, 1_000 if quick else 10_000)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


def table(res: dict[str, Any]) -> str:
    """Markdown tables."""
    rows = [
        "## Reading a big run (`bench/query.py`)",
        "",
        "| records | reading | raw JSON Lines | peak RSS | compacted (Parquet) | peak RSS |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in res["runs"]:
        for name, what in MEASURES.items():
            raw, comp = r["raw"][name], r["compacted"][name]
            rows.append(f"| {r['records']:,} | {what} | {raw['seconds']:.2f} s | "
                        f"{raw['peak_rss_mb']:.0f} MB | {comp['seconds']:.2f} s | "
                        f"{comp['peak_rss_mb']:.0f} MB |")  # fmt: skip
    rows += ["", "| records | index JSON Lines | Parquet | compaction | per hour of a 60 fps camera (216,000 records) | peak RSS |",
             "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in res["runs"]:
        c = r["compact"]
        hours = c["result"]
        recs = sum(h[0] for h in hours)
        per_hour = c["seconds"] * 216_000 / max(recs, 1)
        rows.append(f"| {r['records']:,} | {r['jsonl_bytes'] / 1e6:,.0f} MB | "
                    f"{r['parquet_bytes'] / 1e6:,.1f} MB | {c['seconds']:.1f} s ({len(hours)} hours) | "
                    f"{per_hour:.1f} s | {c['peak_rss_mb']:.0f} MB |")  # fmt: skip
    rows += [
        "",
        "| export | frames | target | frames/s | MB/s | peak RSS |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for e in res["exports"]:
        rows.append(f"| {e['what']} | {e['samples']:,} | {e['to']} | {e['samples'] / e['seconds']:.0f} | "
                    f"{e['bytes'] / 1e6 / e['seconds']:.0f} | {e['peak_rss_mb']:.0f} MB |")  # fmt: skip
    for e in res["exports"]:
        if "alone" in e and "cpu_s" in e:
            a = e["alone"]
            rows += ["", f"JPEG XL -> PNG ({a['png']}): the export {e['samples'] / e['seconds']:.1f} "
                     f"frames/s, {2 * e['samples'] / e['cpu_s']:.1f} on 2 cores by CPU time; decode + "
                     f"encode alone on two threads {a['fps']:.1f} frames/s, {a['fps_2cores']:.1f} on 2 "
                     "cores (the same frames, nothing else)."]  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """The command line (and the child processes' entry point)."""
    p = argparse.ArgumentParser(prog="python -m bench.query", description=__doc__)
    p.add_argument("--measure", nargs=2, metavar=("NAME", "RUN"))
    p.add_argument("--export", nargs=4, metavar=("RUN", "TO", "WHERE", "OUT"))
    p.add_argument("--alone", nargs=3, metavar=("RUN", "WHERE", "FRAMES"))
    p.add_argument("--records", type=int, action="append", help="run sizes (repeatable)")
    p.add_argument("--dir", help="where to make the runs (default: a temporary folder)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", help="also write the results as JSON here")
    a = p.parse_args(argv)
    if a.measure:
        print(json.dumps(_measure(*a.measure)))
        return 0
    if a.export:
        print(json.dumps(_export(*a.export)))
        return 0
    if a.alone:
        print(json.dumps(_alone(*a.alone)))
        return 0
    res = run(a.quick, a.records, Path(a.dir) if a.dir else None)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

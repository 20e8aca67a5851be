"""The records engine: the time rule, filters, the live-segment cursor, ranged store reads, and
what the reading verbs print (full ids, stats of every record kind, one-line errors)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog.cli import build_parser, main, summarise
from imagelog.ids import uuid7
from imagelog.layout import segment_key
from imagelog.record import dumps, iso_utc
from imagelog.records import Filters, SegmentCursor, parse_time
from imagelog.stores import LocalStore, MemoryStore
from imagelog.stores.base import Store

T0 = 1_764_000_000 * 10**9  # 2025-11-24T16:00:00Z


@pytest.fixture(name="berlin")
def _berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_one_rule_for_times_without_a_zone(berlin: None) -> None:
    """No zone: local time (as captured_at= and trigger --at); a zone or Unix seconds: as said."""
    assert parse_time("2025-11-24T17:00:00") == "2025-11-24T16:00:00.000000Z"
    assert parse_time("2025-11-24T16:00:00Z") == "2025-11-24T16:00:00.000000Z"
    assert parse_time("2025-11-24T18:00:00+02:00") == "2025-11-24T16:00:00.000000Z"
    assert parse_time("1764000000") == "2025-11-24T16:00:00.000000Z"
    assert (
        imagelog.inputs.parse_time_ns(
            __import__("datetime").datetime.fromisoformat("2025-11-24T17:00:00")
        )
        == T0
    )


@pytest.mark.parametrize("bad", ["yesterday", "", "2025-13-01", "nan", "1e400"])
def test_bad_times_are_one_line_errors(bad: str) -> None:
    with pytest.raises(ValueError, match=r"since .* is not a time") as info:
        parse_time(bad, name="since")
    assert "\n" not in str(info.value)


def _write(run: Path, recs: list[dict[str, Any]], writer: str = "aaaa0001-1") -> Path:
    path = run / segment_key("2025-11-24T16", writer)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.writelines(dumps(r) + "\n" for r in recs)
    return path


def _event(action: str, i: int, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "@timestamp": iso_utc(T0 + i * 10**9),
        "event": {"kind": "event", "action": action, "id": uuid7(T0 + i * 10**9),
                  "created": iso_utc(T0 + i * 10**9), "reason": "disk_full"},
        "image": {"source": "cam1"},
        "imagelog": {"schema": 1, "writer": "aaaa0001-1", **extra},
    }  # fmt: skip
    return rec


def test_since_without_a_zone_is_local_in_records(berlin: None, tmp_path: Path) -> None:
    """records(since=) follows the same rule: 17:00:01 Berlin is 16:00:01Z."""
    run = tmp_path / "run"
    _write(run, [_event("dropped", i) for i in range(4)])
    got = list(imagelog.read(run).records(include_events=True, since="2025-11-24T17:00:01"))
    assert [r["@timestamp"][:19] for r in got] == [f"2025-11-24T16:00:0{i}" for i in (1, 2, 3)]


def test_stats_shows_every_kind_of_record(tmp_path: Path) -> None:
    """Failures, ring expiries, triggers and other kinds are counted, not hidden."""
    run = tmp_path / "run"
    recs = [_event("failed", i) for i in range(3)]
    recs += [
        _event("expired", 5, expired={"frames": 40}),
        _event("expired", 6, expired={"frames": 2}),
    ]
    recs += [_event("triggered", 7), _event("dropped", 8), _event("purged", 9)]
    _write(run, recs)
    s = summarise(imagelog.read(run))
    assert (s["failed"], s["expired"], s["triggers"], s["dropped"]) == (3, 42, 1, 1)
    assert s["failures_by_reason"] == {"disk_full": 3}
    assert s["by_source"]["cam1"]["failed"] == 3
    assert s["events"] == {"dropped": 1, "expired": 2, "failed": 3, "purged": 1, "triggered": 1}


def test_stats_text_names_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    _write(run, [_event("failed", i) for i in range(13)])
    assert main(["stats", str(run)]) == 0
    out = capsys.readouterr().out
    assert "13 failed" in out and "failures: disk_full 13" in out


def test_ids_printed_by_ls_and_tail_find_their_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Several sources within one millisecond share 13 characters of id: the full id is shown
    and ``show RUN <id>`` takes it."""
    run = tmp_path / "run"
    with imagelog.open(run, format="png") as log:
        for i in range(6):
            log.log(np.full((4, 4), i, np.uint8), source=f"cam{i % 3}")
    ids = [r["image"]["id"] for r in imagelog.read(run).records()]
    assert main(["ls", str(run)]) == 0
    table = capsys.readouterr().out
    assert main(["tail", str(run), "-n", "6"]) == 0
    tail = capsys.readouterr().out
    for rid in ids:
        assert rid in table and rid in tail
        assert main(["show", str(run), rid]) == 0
        assert json.loads(capsys.readouterr().out)["image"]["id"] == rid


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["ls", "{run}", "-n", "-5"], "-5"),
        (["tail", "{run}", "-n", "-1"], "-1"),
        (["tail", "{run}", "--where", "nosuch = 1"], "nosuch"),
        (["ls", "{run}", "--where", "select"], "where 'select'"),
        (["ls", "{run}", "--where", "width >"], "where 'width >'"),
        (["query", "{run}", "select 1", "--limit", "-3"], "--limit"),
        (
            ["export", "{run}", "{tmp}/e", "--to", "imagefolder", "--since", "yesterday"],
            "is not a time",
        ),
    ],
)
def test_reading_mistakes_are_one_line(
    tmp_path: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    _write(run, [_event("dropped", 0)])
    try:
        status = main([a.format(run=run, tmp=tmp_path) for a in argv])
    except SystemExit as exc:  # refused by the argument parser
        status = exc.code  # type: ignore[assignment]
    assert status in (1, 2)
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not any(s in err for s in ("LINE 1", "read_csv", "json_extract", "FROM records"))
    assert not (tmp_path / "e").exists()  # a refused export leaves nothing behind


def test_tail_n_help_says_the_order() -> None:
    tail = build_parser()._subparsers._group_actions[0].choices["tail"]  # type: ignore[union-attr]
    assert "oldest first" in tail.format_help()


def test_filters_one_parser(tmp_path: Path) -> None:
    """The viewer's filters and the keyword filters are one parser over the same columns."""
    run = tmp_path / "run"
    with imagelog.open(run, format="png") as log:
        for i in range(4):
            log.log(np.zeros((4, 4), np.uint8), source=f"cam{i % 2}", labels={"k": str(i)}, step=i)
    con = imagelog.read(run).query("select 1")  # noqa: F841 - the view exists
    from imagelog.records import with_retry

    def count(f: Filters) -> int:
        cond, params = f.sql()
        return int(with_retry(imagelog.read(run).store, lambda c: c.execute(
            f"SELECT count(*) FROM records WHERE {cond}", params or None).fetchall()[0][0]))  # fmt: skip

    assert count(Filters(sources=("cam1",))) == 2
    assert count(Filters(meta=("step>=2",), labels=("k=3",))) == 1
    assert count(Filters(where="width = 4", since="2000-01-01")) == 4
    with pytest.raises(ValueError, match="needs a number"):
        Filters(meta=("step>x",)).sql()


@pytest.fixture(name="store", params=["local", "memory"])
def _store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "run")
    return MemoryStore()


def _append(store: Store, key: str, data: bytes) -> None:
    """Bytes at the end of an object, as a writer's append (a line may be cut anywhere)."""
    store.put(key, (store.get(key) if store.exists(key) else b"") + data)


def test_store_ranged_reads_and_sizes(store: Store) -> None:
    store.put("index/x.bin", b"0123456789")
    assert store.read("index/x.bin", 2, 5) == b"234"
    assert store.read("index/x.bin", 8, 100) == b"89"
    assert store.read("index/x.bin") == b"0123456789"
    assert store.size("index/x.bin") == 10
    assert [(o.key, o.size) for o in store.list("index/")] == [("index/x.bin", 10)]
    with pytest.raises(FileNotFoundError):
        store.read("index/nope", 0, 1)


def test_cursor_whole_lines_rotation_and_removal(store: Store) -> None:
    """Only whole lines; a new segment is picked up; a removed one is forgotten; from_end."""
    a = segment_key("2025-11-24T16", "aaaa0001-1")
    b = segment_key("2025-11-24T17", "aaaa0001-1")
    _append(store, a, b'{"n": 1}\n{"n": 2')
    late = SegmentCursor(store, from_end=True)
    assert list(late.lines()) == []
    cur = SegmentCursor(store)
    assert list(cur.lines()) == [b'{"n": 1}']
    assert list(cur.lines()) == []  # the torn tail waits for its newline
    _append(store, a, b"}\n")
    _append(store, b, b'{"n": 3}\n')  # the hour rolled over
    assert list(cur.lines()) == [b'{"n": 2}', b'{"n": 3}']
    assert list(late.lines()) == [b'{"n": 2}', b'{"n": 3}']
    store.delete([a])
    changes = cur.look()
    assert changes.gone == [a] and a not in cur.offsets


def test_cursor_long_line_comes_whole(store: Store) -> None:
    key = segment_key("2025-11-24T16", "aaaa0001-1")
    long = b'{"x": "' + b"y" * 5000 + b'"}'
    _append(store, key, long + b"\n" + b'{"n": 2}\n')
    cur = SegmentCursor(store)
    cur.look()
    chunks = list(cur.read(key, chunk=1000))
    assert b"".join(c for _, c in chunks).split(b"\n")[:2] == [long, b'{"n": 2}']
    assert cur.line(key, 0, len(long)) == long


def _one_summary(run: Path) -> Path:
    (path,) = (run / "index").glob("*.summary.json")
    return path


def test_a_closed_hour_leaves_a_summary_that_stats_reads(tmp_path: Path) -> None:
    """close() leaves the hour's summary; stats takes the counts from it while the segment is
    unchanged, and reads the lines again once it changes (a stale summary is ignored)."""
    run = tmp_path / "run"
    with imagelog.open(run, format="png") as log:
        for i in range(5):
            log.log(np.full((4, 4), i, np.uint8), source=f"cam{i % 2}")
    (seg,) = (run / "index").glob("*.jsonl")
    summary = _one_summary(run)
    doc = json.loads(summary.read_bytes())
    assert doc["bytes"] == seg.stat().st_size and doc["lines"] == 5
    truth = summarise(imagelog.read(run))
    summary.unlink()
    assert summarise(imagelog.read(run)) == truth  # the same figures from the lines
    summary.write_bytes(
        json.dumps({**doc, "rows": [[*r[:4], 99, *r[5:]] for r in doc["rows"]]}).encode()
    )
    assert summarise(imagelog.read(run))["images"] == 99 * len(doc["rows"])  # it is read
    with seg.open("ab") as fh:
        fh.write(seg.read_bytes().splitlines(keepends=True)[0])
    assert summarise(imagelog.read(run))["images"] == 6  # stale: the lines are read


def test_summary_of_an_hour_with_a_partial_purge_is_not_used(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with imagelog.open(run, format="png") as log:
        for i in range(3):
            log.log(np.full((4, 4), i, np.uint8), source="cam1")
    first = next(imagelog.read(run).records())
    _write(run, [{**_event("purged", 0), "imagelog": {"purge": {"ids": [first["image"]["id"]]}}}])
    assert summarise(imagelog.read(run))["images"] == 2
    ids = [r["image"]["id"] for r in imagelog.read(run).records()]
    assert first["image"]["id"] not in ids and len(ids) == 2


def test_a_summarised_segment_with_a_long_line_is_read_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Lines over 2 MB are read in the big mode; a summary tells so without a scan."""
    from imagelog.index.summary import HourSummary
    from imagelog.layout import summary_key

    run = tmp_path / "run"
    recs = [_event("dropped", 0), {**_event("dropped", 1), "meta": {"k": "x" * 3_000_000}}]
    seg = _write(run, recs)
    summary = HourSummary("2025-11-24T16", "aaaa0001-1")
    summary.add([dumps(r) for r in recs], seg.stat().st_size)
    (run / summary_key("2025-11-24T16", "aaaa0001-1")).write_bytes(summary.dumps())
    assert summary.longest > 3_000_000
    got = list(imagelog.read(run).records(include_events=True))
    assert len(got) == 2 and len(got[1]["meta"]["k"]) == 3_000_000
    assert not caplog.records
    assert summarise(imagelog.read(run))["dropped"] == 2

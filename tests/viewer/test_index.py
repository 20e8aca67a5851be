"""The viewer's live index: reads only what was appended, skips a torn tail, follows retention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import imagelog
from imagelog.viewer import Filters, LiveIndex


def _log(run: Path, n: int, source: str = "cam1", **meta: object) -> None:
    with imagelog.open(run, format="png") as log:
        for i in range(n):
            log.log(np.full((8, 8), i, np.uint8), source=source, i=i, **meta)


@pytest.fixture(name="index")
def _index(run_dir: Path, tmp_path: Path) -> LiveIndex:
    _log(run_dir, 3)
    idx = LiveIndex(imagelog.read(run_dir), db_dir=tmp_path)
    yield idx  # type: ignore[misc]
    idx.close()


def test_reads_only_what_was_appended(index: LiveIndex, run_dir: Path) -> None:
    """A second refresh reads nothing; new lines are read from where the last read stopped."""
    assert index.refresh() == 3
    assert index.refresh() == 0
    seg = next((run_dir / "index").glob("*.jsonl"))
    lines = seg.read_bytes().splitlines(keepends=True)
    size = seg.stat().st_size
    with open(seg, "ab") as fh:  # two more records, copies of the first with new ids
        for k in (1, 2):
            rec = json.loads(lines[0])
            rec["image"]["id"] = f"appended-{k}"
            fh.write(json.dumps(rec).encode() + b"\n")
    assert index.refresh() == 2
    assert index.count(Filters()) == 5
    row = index.row("appended-2")
    assert row is not None and row["off"] > size
    assert json.loads(index.line(row))["image"]["id"] == "appended-2"


def test_torn_tail_is_skipped_until_whole(index: LiveIndex, run_dir: Path) -> None:
    """A line without its newline (a writer killed mid-line) is not read; once whole, it is."""
    index.refresh()
    seg = next((run_dir / "index").glob("*.jsonl"))
    rec = json.loads(seg.read_bytes().splitlines()[0])
    rec["image"]["id"] = "late"
    line = json.dumps(rec).encode()
    with open(seg, "ab") as fh:
        fh.write(line[:40])
    assert index.refresh() == 0
    assert index.count(Filters()) == 3
    with open(seg, "ab") as fh:
        fh.write(line[40:] + b"\n")
    assert index.refresh() == 1
    assert index.row("late") is not None


def test_damaged_line_in_the_middle_is_skipped(run_dir: Path, tmp_path: Path) -> None:
    """Garbage between two good lines costs only itself (the tolerant path)."""
    _log(run_dir, 2)
    seg = next((run_dir / "index").glob("*.jsonl"))
    good = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(good[0] + b'{"@timestamp": "2026-\xff\xfe broken\n' + good[1])
    idx = LiveIndex(imagelog.read(run_dir), db_dir=tmp_path)
    try:
        assert idx.refresh() == 3  # lines read
        assert idx.count(Filters()) == 2
        ids = [json.loads(x)["image"]["id"] for x in good]
        assert {f["id"] for f in idx.page(Filters(), 0, 10)} == set(ids)
        row = idx.row(ids[1])
        assert row is not None and idx.line(row) == good[1]
    finally:
        idx.close()


def test_removed_segment_takes_its_rows(index: LiveIndex, run_dir: Path) -> None:
    """Retention deleting a whole hour's segment removes its records from the view."""
    index.refresh()
    version = index.version
    for seg in (run_dir / "index").glob("*.jsonl"):
        seg.unlink()
    index.refresh()
    assert index.count(Filters()) == 0 and index.version > version


def test_purged_ids_are_left_out(index: LiveIndex, run_dir: Path) -> None:
    """A ``purged`` event listing ids hides those frames (partial purge of an hour)."""
    index.refresh()
    first = index.page(Filters(), 0, 1)[0]["id"]
    seg = next((run_dir / "index").glob("*.jsonl"))
    event = {"@timestamp": json.loads(seg.read_bytes().splitlines()[0])["@timestamp"],
             "event": {"kind": "event", "action": "purged", "id": "p-1"},
             "imagelog": {"purge": {"ids": [first]}}}  # fmt: skip
    with open(seg, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event) + "\n")
    index.refresh()
    assert index.count(Filters()) == 2
    assert first not in [f["id"] for f in index.page(Filters(), 0, 10)]
    assert [e["action"] for e in index.timeline(Filters())["events"]] == ["purged"]


def test_timeline_counts_per_source(run_dir: Path, tmp_path: Path) -> None:
    """Buckets add up to the frames of each source; drops are listed as events."""
    _log(run_dir, 6, source="a")
    _log(run_dir, 4, source="b")
    idx = LiveIndex(imagelog.read(run_dir), db_dir=tmp_path)
    try:
        idx.refresh()
        tl = idx.timeline(Filters(), buckets=10)
        assert {s: sum(c) for s, c in tl["series"].items()} == {"a": 6, "b": 4}
        assert tl["events"] == []
        assert [s["frames"] for s in idx.sources()] == [6, 4]
    finally:
        idx.close()


def test_compaction_while_viewing_keeps_every_frame_once(index: LiveIndex, run_dir: Path) -> None:
    """An hour compacted into Parquet (by the query engine) is read from there, once."""
    import time

    from imagelog.compact import compact
    from imagelog.stores import make_store

    index.refresh()
    before = index.page(Filters(), 0, 10)
    report = compact(make_store(run_dir), now_ns=time.time_ns() + 3 * 3600 * 10**9)
    assert report.compacted and not list((run_dir / "index").glob("*.jsonl"))
    version = index.version
    index.refresh()
    assert index.version > version
    assert index.page(Filters(), 0, 10) == before
    assert index.count(Filters(meta=("i>=1",))) == 2
    row = index.row(before[1]["id"])
    assert row is not None and row["off"] is None
    assert json.loads(index.line(row))["image"]["id"] == before[1]["id"]


def test_pages_from_the_end_match_pages_from_the_start(run_dir: Path, tmp_path: Path) -> None:
    """A page past the middle, read newest first and reversed, is the same page."""
    _log(run_dir, 9, source="a")
    _log(run_dir, 8, source="b")
    idx = LiveIndex(imagelog.read(run_dir), db_dir=tmp_path)
    try:
        idx.refresh()
        everything = idx.page(Filters(), 0, 100)
        assert len(everything) == 17
        for offset in range(17):
            for limit in (1, 3, 5):
                assert (
                    idx.page(Filters(), offset, limit, total=17)
                    == everything[offset : offset + limit]
                )
    finally:
        idx.close()


def test_thumbnail_cache_stays_under_its_bound(tmp_path: Path) -> None:
    """Past ``max_bytes`` the oldest thumbnails go, down to 80%; one asked for again is remade."""
    from imagelog.viewer.thumbs import ThumbnailCache

    cache = ThumbnailCache(tmp_path / "thumbs", max_bytes=10_000, workers=2)
    try:
        targets = [cache.key("run", f"images/{i}.png", 100) for i in range(8)]
        for t in targets:
            assert cache.get(t, lambda: b"x" * 3000).result(30) == t
        kept = [t for t in targets if t.exists()]
        assert sum(t.stat().st_size for t in kept) <= 10_000
        assert targets[-1] in kept and targets[0] not in kept
        made = cache.made
        assert cache.get(targets[0], lambda: b"y" * 10).result(30).read_bytes() == b"y" * 10
        assert cache.made == made + 1
    finally:
        cache.close()


def test_index_is_taken_up_in_the_next_session(run_dir: Path, tmp_path: Path) -> None:
    """With a cache folder, the rows and the cursor stay: the next session reads only what was
    appended since, and a segment rewritten meanwhile is read again."""
    _log(run_dir, 3)
    first = LiveIndex(imagelog.read(run_dir), db_dir=tmp_path)
    assert not first.resumed and first.refresh() == 3
    first.close()
    _log(run_dir, 2, source="cam2")  # a second writer: a new segment
    again = LiveIndex(imagelog.read(run_dir), db_dir=tmp_path)
    try:
        assert again.resumed and again.count(Filters()) == 3
        assert again.refresh() == 2  # only the new lines
        assert again.count(Filters()) == 5
    finally:
        again.close()
    seg = min((run_dir / "index").glob("*.jsonl"))
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[1:]))  # rewritten (a repair): shorter, other first bytes
    third = LiveIndex(imagelog.read(run_dir), db_dir=tmp_path)
    try:
        third.refresh()
        assert third.count(Filters()) == 4
    finally:
        third.close()


def test_a_second_viewer_of_the_same_run_keeps_its_own(run_dir: Path, tmp_path: Path) -> None:
    _log(run_dir, 2)
    a = LiveIndex(imagelog.read(run_dir), db_dir=tmp_path)
    b = LiveIndex(imagelog.read(run_dir), db_dir=tmp_path)
    try:
        assert a.refresh() == 2 and b.refresh() == 2
    finally:
        a.close()
        b.close()

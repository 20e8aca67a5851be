"""A run made by hand, as one from elsewhere may be: every non-viewer reader stays up, reads what
it can, reports what it cannot, and never reads a byte outside the run (issue 19)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog.audit import reindex, verify
from imagelog.cli import main
from imagelog.errors import KeyOutsideRun

BIG = 20_000_000


def _variant(line: bytes, **fields: Any) -> bytes:
    rec = json.loads(line)
    for dotted, value in fields.items():
        *parts, last = dotted.split(".")
        cur = rec
        for part in parts:
            cur = cur.setdefault(part, {})
        cur[last] = value
    return json.dumps(rec).encode()


@pytest.fixture(name="hostile")
def _hostile(tmp_path: Path) -> tuple[Path, Path]:
    """(run, outside): three good frames, then hostile lines; ``outside`` holds a valid image
    that index lines and a symlink point at."""
    run, outside = tmp_path / "run", tmp_path / "outside"
    with imagelog.open(run, format="png") as log:
        for i in range(3):
            log.log(np.full((8, 8), i, np.uint8), source="cam1", i=i)
    (seg,) = (run / "index").glob("*.jsonl")
    good = seg.read_bytes().splitlines()
    first = json.loads(good[0])
    outside.mkdir()
    (outside / "secret.png").write_bytes((run / first["file"]["path"]).read_bytes())
    link = Path(first["file"]["path"]).with_name("link.png").as_posix()
    (run / link).symlink_to(outside / "secret.png")
    hostile = [
        _variant(good[0], **{"image.id": "evil-rel", "file.path": "../outside/secret.png"}),
        _variant(good[0], **{"image.id": "evil-abs", "file.path": str(outside / "secret.png")}),
        _variant(good[0], **{"image.id": "evil-link", "file.path": link}),
        _variant(good[0], **{"image.id": "big", "meta.keypoints": "x" * BIG}),
        b'{"image": {"id": "bad\xff\xfe"}, "event": {"action": "logged"}}',
        b'{"torn": tru',
        b"[1, 2, 3]",
        _variant(good[0], **{"image.id": "future", "imagelog.schema": 99}),
        good[1],  # a duplicate id
    ]
    with open(seg, "ab") as fh:
        fh.write(b"\n".join(hostile) + b"\n" + b'{"image": {"id": "torn-tail"')
    return run, outside


def _readable_ids() -> set[str]:
    return {"evil-rel", "evil-abs", "evil-link", "big", "future"}


def test_records_read_what_they_can(
    hostile: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """records(): good and odd-but-valid lines come back; the non-UTF-8 line is named, not
    printed; nothing raises."""
    run = imagelog.read(hostile[0])
    with caplog.at_level(logging.WARNING, logger="imagelog"):
        recs = list(run.records(include_events=True))
    ids = [r["image"]["id"] for r in recs]
    assert _readable_ids() <= set(ids) and len(ids) == 3 + 5 + 1
    big = next(r for r in recs if r["image"]["id"] == "big")
    assert len(big["meta"]["keypoints"]) == BIG
    assert all(len(m.getMessage()) < 300 for m in caplog.records)  # no line is printed
    assert any("not UTF-8" in m.getMessage() for m in caplog.records)


def test_nothing_outside_the_run_is_read(hostile: tuple[Path, Path]) -> None:
    """A record whose path leaves the run (../, absolute, a symlink out) raises, never reads."""
    run = imagelog.read(hostile[0])
    by_id = {r["image"]["id"]: r for r in run.records()}
    for rid in ("evil-rel", "evil-abs", "evil-link"):
        with pytest.raises(KeyOutsideRun):
            run.read_bytes(by_id[rid])
        with pytest.raises(KeyOutsideRun):
            run.load(by_id[rid])
    assert run.load(by_id["future"]).shape == (8, 8)


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "{run}", "-n", "0", "--all"],
        ["ls", "{run}", "--json"],
        ["stats", "{run}"],
        ["stats", "{run}", "--json"],
        ["tail", "{run}", "-n", "20"],
        ["query", "{run}", "select id, length(meta) from records"],
        ["show", "{run}", "big"],
        ["export", "{run}", "{tmp}/folder", "--to", "imagefolder"],
        ["export", "{run}", "{tmp}/wds", "--to", "webdataset"],
    ],
)
def test_every_reader_stays_up(
    hostile: tuple[Path, Path],
    tmp_path: Path,
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each verb exits 0, prints no traceback and no huge line on stderr."""
    args = [a.format(run=hostile[0], tmp=tmp_path) for a in argv]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(len(line) < 500 for line in err.splitlines())


def test_export_lists_outside_paths_as_gaps(hostile: tuple[Path, Path], tmp_path: Path) -> None:
    """An export takes the readable frames and lists the others in gaps.jsonl."""
    assert (
        main([str(a) for a in ("export", hostile[0], tmp_path / "out", "--to", "imagefolder")]) == 0
    )
    gaps = [json.loads(x) for x in (tmp_path / "out" / "gaps.jsonl").read_text().splitlines()]
    assert {g["id"] for g in gaps if g["kind"] == "missing"} == {
        "evil-rel",
        "evil-abs",
        "evil-link",
    }


def test_verify_reports_and_reindex_stays_inside(hostile: tuple[Path, Path]) -> None:
    """verify names the torn lines and the paths it will not read; reindex stays inside the run
    (the symlink out is not listed) and hides none of it."""
    run = imagelog.read(hostile[0])
    report = verify(run, sample=1.0)
    missing = {f.key for f in report.of("missing")}
    assert {"../outside/secret.png", str(hostile[1] / "secret.png")} <= missing
    assert report.of("torn")
    assert not any(k.endswith("link.png") for k in (f.key for f in report.of("orphan")))
    reindex(run.store)  # keeps what the old index knows; adopts nothing from outside
    after = verify(imagelog.read(hostile[0]), sample=1.0)
    missing = {f.key for f in after.of("missing")}
    assert {"../outside/secret.png", str(hostile[1] / "secret.png")} <= missing
    assert any(k.endswith("link.png") for k in missing)  # named, never read through the link
    assert not any(k.endswith("link.png") for k in (f.key for f in after.of("orphan")))


def test_store_refuses_keys_that_leave(tmp_path: Path) -> None:
    """The local store's one key check: absolute keys, ``..`` parts and symlinks out."""
    store = imagelog.stores.LocalStore(tmp_path / "run")
    (tmp_path / "secret").write_bytes(b"s")
    os.symlink(tmp_path / "secret", tmp_path / "run" / "link")
    for key in ("../secret", str(tmp_path / "secret"), "a/../../secret", "link"):
        with pytest.raises(KeyOutsideRun):
            store.get(key)
        with pytest.raises(KeyOutsideRun):
            store.read(key, 0, 1)
    assert [o.key for o in store.list()] == []


def test_query_and_the_viewers_index_take_the_big_line(
    hostile: tuple[Path, Path], tmp_path: Path
) -> None:
    """Run.query() (a relation run later) and the viewer's index read the 20 MB record."""
    from imagelog.viewer import Filters, LiveIndex

    run = imagelog.read(hostile[0])
    got = run.query("select length(meta) from records where id = 'big'").fetchall()
    assert (
        got == [(len(json.dumps({"keypoints": "x" * BIG}, separators=(",", ":"))),)]
        or got[0][0] > BIG
    )
    index = LiveIndex(run, db_dir=tmp_path / "cache")
    try:
        index.refresh()
        assert index.row("big") is not None
        assert index.count(Filters()) >= 3 + len(_readable_ids())
    finally:
        index.close()


def test_sql_reads_no_file_outside_the_run(tmp_path: Path) -> None:
    """SQL a user passes (`Run.query`, `imagelog query`, `where=`) reads the run's files and
    nothing else: a file beside the run stays unread, and `COPY` writes nowhere but `--csv`'s
    folder."""
    run = tmp_path / "run"
    with imagelog.open(run, format="png") as log:
        log.log(np.zeros((4, 4), np.uint8), source="cam")
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    r = imagelog.read(run)
    assert r.query("select count(*) from records").fetchall() == [(1,)]
    with pytest.raises(Exception, match="disabled"):
        r.query(f"select * from read_csv('{secret}')").fetchall()
    with pytest.raises(Exception, match="disabled"):
        next(r.records(where=f"source in (select a::varchar from read_csv('{secret}'))"))
    assert main(["query", str(run), f"select * from read_csv('{secret}')"]) == 1
    out = tmp_path / "out.csv"
    assert main(["query", str(run), "select count(*) from records", "--csv", str(out)]) == 0
    assert out.read_text().splitlines() == ["count_star()", "1"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert main(["query", str(run), f"copy (select 1) to '{elsewhere / 'x.csv'}'"]) == 1
    assert not list(elsewhere.iterdir())

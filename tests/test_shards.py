"""Shards: small frames packed into per-writer tar files, and everything that reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog import cli
from imagelog._shards import BLOCK, TRAILER, ShardWriter, read_file, scan, tar_member
from imagelog.audit import reindex, verify
from imagelog.compact import compact
from imagelog.errors import InvalidSetting
from imagelog.export import export
from imagelog.logger import ImageLog
from imagelog.samples import CameraSimulator
from imagelog.settings import Settings
from imagelog.stores import MemoryStore, make_store

from .conftest import PATIENCE, START_NS, FakeClock, kill9_when_ready

HOUR = 3600 * 10**9


def shards_of(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "images").rglob("*.tar"))


def lone_files(run_dir: Path) -> list[Path]:
    return [p for p in (run_dir / "images").rglob("*") if p.is_file() and p.suffix != ".tar"]


@pytest.fixture(name="cam", scope="module")
def _cam() -> CameraSimulator:
    return CameraSimulator(32, 24, seed=7)


@pytest.fixture(name="sharded")
def _sharded(run_dir: Path, cam: CameraSimulator) -> Path:
    """30 small PNG frames in shards of about 10 KiB, and one large frame as a file of its own."""
    with imagelog.open(run_dir, format="png", shard_under="16KiB", shard_bytes="10KiB") as log:
        for i in range(30):
            log.log(cam.frame(), source=f"cam{i % 2}", i=i)
        noise = np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8)
        log.log(noise, source="big", i=30)
    return run_dir


def test_small_frames_are_members_of_tar_shards(sharded: Path) -> None:
    """Each small frame is a member of a shard that tar reads; its record names the shard, the
    member, where its bytes are; load and read_bytes take one ranged read; large frames stay
    files of their own."""
    run = imagelog.read(sharded)
    recs = list(run.records())
    assert len(recs) == 31
    small = [r for r in recs if r["meta"]["i"] < 30]
    shards = shards_of(sharded)
    assert len(shards) > 1
    assert {r["file"]["path"] for r in small} == {p.relative_to(sharded).as_posix() for p in shards}
    big = recs[-1]
    assert "offset" not in big["file"] and (sharded / big["file"]["path"]).is_file()
    assert lone_files(sharded) == [sharded / big["file"]["path"]]
    by_member = {}
    for shard in shards:
        listing = subprocess.run(["tar", "tf", str(shard)], capture_output=True, text=True)
        assert listing.returncode == 0 and not listing.stderr
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                assert m.isfile() and listing.stdout.count(m.name) == 1
                fh = tar.extractfile(m)
                assert fh is not None
                by_member[m.name] = fh.read()
    for r in small:
        f = r["file"]
        assert f["member"] == Path(f["member"]).name and f["member"].endswith(".png")
        assert by_member[f["member"]] == run.read_bytes(r)
        data = (sharded / f["path"]).read_bytes()
        assert data[f["offset"] : f["offset"] + f["size"]] == by_member[f["member"]]
        assert (
            imagelog.codecs.embedded_record(by_member[f["member"]])["image"]["id"]
            == (r["image"]["id"])
        )
        assert run.load(r).shape == (24, 32, 3)
    assert verify(run, sample=1.0).counts()["orphan"] == 0
    assert not verify(run, sample=1.0).damaged


# webdataset 1.0.2 leaves its last shard's file open for the garbage collector to close
@pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)
def test_webdataset_reads_a_shard(sharded: Path) -> None:
    """WebDataset takes the shards as they are: one sample per member, keyed by its name."""
    import webdataset as wds

    run = imagelog.read(sharded)
    want = {Path(r["file"]["member"]).stem: r for r in run.records() if "member" in r["file"]}
    seen = 0
    urls = [str(p) for p in shards_of(sharded)]
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8"):
        rec = want[sample["__key__"]]
        assert np.array_equal(sample["png"], run.load(rec))
        seen += 1
    assert seen == len(want) == 30


def test_shards_roll_at_the_hour_and_never_span_it(run_dir: Path, cam: CameraSimulator) -> None:
    """Frames of two hours go into shards under their own hours' folders."""
    clock = FakeClock()
    settings = Settings.from_kwargs(format="png", shard_under="64KiB")
    with ImageLog(make_store(run_dir), settings, clock=clock) as log:
        for i in range(6):
            clock.ns = START_NS + HOUR - 3 * 10**9 + i * 10**9
            log.log(cam.frame(), i=i)
    shards = [p.relative_to(run_dir).as_posix() for p in shards_of(run_dir)]
    assert [s[:21] for s in shards] == ["images/2024/01/01/00/", "images/2024/01/01/01/"]
    run = imagelog.read(run_dir)
    for r in run.records():
        hour = "00" if r["meta"]["i"] < 3 else "01"
        assert r["file"]["path"].startswith(f"images/2024/01/01/{hour}/_shards/")
    closed = (run_dir / shards[0]).read_bytes()
    assert closed.endswith(TRAILER)


def test_shard_rolls_by_age() -> None:
    """A shard older than shard_age is closed at the next frame; the next one starts anew."""
    store = MemoryStore()
    lines: list[str] = []
    now = [0.0]
    w = ShardWriter(store, "w-1", append_line=lambda line, _: lines.append(line),
                    max_bytes=2**20, max_age=10.0, sync=False, report=lambda k, e: None,
                    clock=lambda: now[0])  # fmt: skip
    a = w.add(START_NS, "a.png", b"x" * 100)
    w.commit(a, "a", START_NS)
    now[0] = 11.0
    b = w.add(START_NS, "b.png", b"y" * 100)
    w.commit(b, "b", START_NS)
    assert a["path"] != b["path"] and store.exists(a["path"]) and lines == ["a"]
    w.close()
    assert lines == ["a", "b"] and w.puts == 2
    assert read_file(store, b) == b"y" * 100


def test_object_store_puts_a_shard_whole_then_its_lines(cam: CameraSimulator) -> None:
    """Without files to append to, a shard is put once, when it closes; its members' index
    lines follow it (flush closes it), so no line points at a shard not yet stored."""
    store = MemoryStore()
    settings = Settings.from_kwargs(format="png", shard_under="64KiB")
    log = ImageLog(store, settings)
    try:
        for i in range(20):
            log.log(cam.frame(), i=i)
        assert log.flush(PATIENCE)
        shards = [o.key for o in store.list("images/")]
        assert len(shards) == 1 and shards[0].endswith(".tar")
        run = imagelog.Run(store)
        recs = list(run.records())
        assert [r["meta"]["i"] for r in recs] == list(range(20))
        assert all(r["file"]["path"] == shards[0] for r in recs)
        assert run.load(recs[5]).shape == (24, 32, 3)
        log.log(cam.frame(), i=20)
    finally:
        log.close()
    assert len(list(imagelog.Run(store).records())) == 21
    assert len(list(store.list("images/"))) == 2


@pytest.mark.parametrize("value", [-1, "17MiB", "lots", "1e99"])
def test_bad_shard_settings_are_refused(run_dir: Path, value: Any) -> None:
    with pytest.raises((InvalidSetting, ValueError)) as err:
        imagelog.open(run_dir, shard_under=value)
    assert "shard_under" in str(err.value)


def test_shards_off(run_dir: Path, cam: CameraSimulator) -> None:
    """shard_under=0 or None: every frame is a file of its own."""
    for off in (0, None):
        with imagelog.open(run_dir, format="png", shard_under=off) as log:
            log.log(cam.frame())
    assert not shards_of(run_dir) and len(lone_files(run_dir)) == 2


CHILD = r"""
import sys
import imagelog
from imagelog.samples import CameraSimulator

run, fsync, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
cam = CameraSimulator(32, 24, seed=seed)
log = imagelog.open(run, fsync=fsync, format="png", shard_under="64KiB", shard_bytes="40KiB")
i = 0
while True:
    log.log(cam.frame(), source="ab"[i % 2], i=i)
    i += 1
    if i == 50:
        log.flush()
        print("ready", flush=True)
"""


@pytest.mark.parametrize(("seed", "fsync"), [(1, "none"), (2, "all")])
def test_kill9_mid_shard(run_dir: Path, seed: int, fsync: str) -> None:
    """kill -9 while frames go into shards: every index line points at a whole, decodable
    member; reindex finds every member again with the same records."""
    kill9_when_ready([sys.executable, "-c", CHILD, str(run_dir), fsync, str(seed)],
                     0.2 + 0.2 * seed)  # fmt: skip
    run = imagelog.read(run_dir)
    report = verify(run, sample=1.0)
    assert not report.damaged, report.findings[:5]
    before = {r["image"]["id"]: r for r in run.records()}
    assert len(before) >= 50
    members = sum(len(scan(p.read_bytes())[0]) for p in shards_of(run_dir))
    rebuilt = reindex(make_store(run_dir))
    assert rebuilt.records == members >= len(before)
    after = {r["image"]["id"]: r for r in imagelog.read(run_dir).records()}
    assert set(before) <= set(after)
    for rid, rec in before.items():
        assert after[rid]["file"] == rec["file"] and after[rid]["meta"] == rec["meta"]
    again = verify(imagelog.read(run_dir), sample=1.0)
    assert not again.damaged and again.counts()["orphan"] == 0


def test_torn_tail_is_cut_back_to_the_last_whole_member(sharded: Path) -> None:
    """A shard whose writer died mid-write: verify lists the tail (an orphan, not damage);
    reindex cuts it back to the last whole member, closes the tar and indexes nothing past it."""
    run = imagelog.read(sharded)
    before = list(run.records())
    shard = shards_of(sharded)[-1]
    data = shard.read_bytes().removesuffix(TRAILER)  # an open shard: no trailer yet
    torn = tar_member("999999_000000_000000999_dead-1.png", b"z" * 3000, 0)[:2000]
    shard.write_bytes(data + torn)
    report = verify(run, sample=1.0)
    assert not report.damaged
    assert [f.detail for f in report.of("orphan")] == [
        f"a torn tail after byte {len(data)} (a writer killed mid-write; reindex cuts it)"
    ]
    rc = cli.main(["reindex", str(sharded), "--json"])
    assert rc == 0
    assert shard.read_bytes() == data + TRAILER
    with tarfile.open(shard) as tar:
        assert "999999_000000_000000999_dead-1.png" not in tar.getnames()
    assert list(imagelog.read(sharded).records()) == before
    assert not verify(imagelog.read(sharded), sample=1.0).findings


def test_damaged_members_are_found(sharded: Path) -> None:
    """A member flipped in place fails its hash; a shard cut short loses the members past the
    cut (missing, not a crash)."""
    run = imagelog.read(sharded)
    recs = [r for r in run.records() if "offset" in r["file"]]
    first = recs[0]["file"]
    path = sharded / first["path"]
    data = bytearray(path.read_bytes())
    data[first["offset"] + 40] ^= 0xFF
    path.write_bytes(bytes(data))
    report = verify(run, sample=0.0)
    assert [(f.kind, f.key) for f in report.findings] == [("hash", first["path"])]
    last = [r for r in recs if r["file"]["path"] == first["path"]][-1]["file"]
    path.write_bytes(bytes(data[: last["offset"] + 10]))
    report = verify(run, sample=0.0)
    assert report.counts()["size"] == 1 and report.damaged
    with pytest.raises(FileNotFoundError, match="cut short"):
        run.read_bytes({"file": last})


def test_scan_stops_at_anything_not_a_member() -> None:
    one = tar_member("a.png", b"abc", 0)
    assert scan(one) == ([scan(one)[0][0]], len(one), False)
    assert scan(one)[0][0].offset == BLOCK and scan(one)[0][0].size == 3
    assert scan(one + TRAILER)[1:] == (len(one), False)
    assert scan(one + b"garbage" * 100)[1:] == (len(one), True)
    assert scan(one + one[:600]) == (scan(one)[0], len(one), True)
    assert scan(b"") == ([], 0, False)


def test_retention_keeps_shards_whole_and_purges_their_hour(
    run_dir: Path, cam: CameraSimulator
) -> None:
    """max_age purges an old hour's shards with its index; a partial purge never deletes a
    shard (it holds other frames): a shard belongs to its hour."""
    clock = FakeClock()
    settings = Settings.from_kwargs(format="png", shard_under="64KiB", max_age="2h")
    with ImageLog(make_store(run_dir), settings, clock=clock) as log:
        for i in range(30):
            clock.ns = START_NS + i * 600 * 10**9  # 6 frames an hour, 5 hours
            log.log(cam.frame(), i=i)
            log.flush()
    run = imagelog.read(run_dir)
    left = [r["meta"]["i"] for r in run.records()]
    assert left == list(range(left[0], 30)) and left[0] >= 12
    hours = {p.relative_to(run_dir).as_posix()[:21] for p in shards_of(run_dir)}
    assert "images/2024/01/01/00/" not in hours and len(hours) <= 3
    assert not verify(run, sample=1.0).damaged

    settings = Settings.from_kwargs(format="png", shard_under="64KiB", max_bytes=1)
    store = make_store(run_dir / "quota")
    with ImageLog(store, settings, clock=FakeClock()) as log:
        for i in range(5):
            log.log(cam.frame(), i=i)
    run = imagelog.read(run_dir / "quota")
    assert len(list(run.records())) == 5 and not verify(run, sample=1.0).damaged


def test_export_copies_members_without_decoding(sharded: Path, tmp_path: Path) -> None:
    run = imagelog.read(sharded)
    report = export(run, tmp_path / "out", to="imagefolder")
    assert report.samples == 31 and not report.converted and not report.gaps
    out = {p.name: p.read_bytes() for p in (tmp_path / "out").rglob("*.png")}
    for r in run.records():
        assert run.read_bytes(r) in out.values()


def test_compacted_hours_keep_members(run_dir: Path, cam: CameraSimulator) -> None:
    clock = FakeClock()
    settings = Settings.from_kwargs(format="png", shard_under="64KiB")
    with ImageLog(make_store(run_dir), settings, clock=clock) as log:
        for i in range(8):
            clock.ns = START_NS + i * HOUR // 4
            log.log(cam.frame(), i=i)
    before = list(imagelog.read(run_dir).records())
    assert compact(make_store(run_dir), now_ns=clock() + 2 * HOUR).compacted
    run = imagelog.read(run_dir)
    after = list(run.records())
    assert after == before and all("offset" in r["file"] for r in after)
    assert [int(run.load(r)[0, 0, 0]) for r in after] == [
        int(imagelog.codecs.decode_any(run.read_bytes(r))[0, 0, 0]) for r in before
    ]
    assert not verify(run, sample=1.0).damaged


def test_viewer_serves_members(sharded: Path, tmp_path: Path) -> None:
    """Thumbnails, the display and /run/<shard>?offset=N of members; an offset that is no
    member's is refused."""
    import time

    from imagelog.viewer import Viewer

    from .viewer.test_http import raw_get

    run = imagelog.read(sharded)
    recs = [r for r in run.records() if "offset" in r["file"]]
    with Viewer(str(sharded), cache_dir=tmp_path / "cache", poll=0.05) as v:
        deadline = time.monotonic() + PATIENCE
        while v.index.loading and time.monotonic() < deadline:
            time.sleep(0.02)
        thumbs = set()
        for r in recs[:3]:
            rid, f = r["image"]["id"], r["file"]
            status, body, _ = raw_get(v, f"/thumb/{rid}")
            assert status == 200 and body[:2] == b"\xff\xd8"
            thumbs.add(body)
            status, body, _ = raw_get(v, f"/api/record/{rid}")
            link = json.loads(body)["file"]
            assert link == f"/run/{f['path']}?offset={f['offset']}"
            status, body, headers = raw_get(v, link)
            assert status == 200 and body == run.read_bytes(r)
            assert headers["content-type"] == "image/png"
            assert f["member"] in headers["content-disposition"]
            status, body, _ = raw_get(v, f"/display/{rid}")
            assert status == 200 and body[:4] == b"\x89PNG"
        assert len(thumbs) == 3  # members of one shard get thumbnails of their own
        f = recs[0]["file"]
        for bad in (f["offset"] + 1, 0, "x", -512):
            status, _, _ = raw_get(v, f"/run/{f['path']}?offset={bad}")
            assert status == 404


def test_deleted_run_folder_starts_a_new_shard(run_dir: Path, cam: CameraSimulator) -> None:
    """The run folder deleted while a shard is open: later frames go into a new shard that
    exists, not into the deleted file."""
    import shutil

    log = imagelog.open(run_dir, format="png", shard_under="64KiB", strict=False)
    for _ in range(3):
        log.log(cam.frame())
    assert log.flush(PATIENCE)
    shutil.rmtree(run_dir)
    for i in range(5):
        log.log(cam.frame(), after=i)
    log.close()
    run = imagelog.read(run_dir)
    assert [r["meta"]["after"] for r in run.records()] == list(range(5))
    assert not verify(run, sample=1.0).damaged


def _writer(tmp_path: Path) -> tuple[ShardWriter, list[str]]:
    lines: list[str] = []
    w = ShardWriter(make_store(tmp_path), "w-1", append_line=lambda line, _: lines.append(line),
                    max_bytes=2**20, max_age=60.0, sync=False, report=lambda k, e: None)  # fmt: skip
    return w, lines


def test_a_failed_write_leaves_no_part_of_its_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member write that fails half way (a full disk) is cut off again; the shard goes on."""
    import errno

    import imagelog._shards as shards_mod

    w, _ = _writer(tmp_path)
    a = w.add(START_NS, "a.png", b"a" * 700)
    real = shards_mod._write_all

    def half(fd: int, parts: list[bytes]) -> None:
        data = b"".join(parts)
        real(fd, [data[: len(data) // 2]])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards_mod, "_write_all", half)
    with pytest.raises(OSError, match="No space left"):
        w.add(START_NS, "b.png", b"b" * 700)
    monkeypatch.setattr(shards_mod, "_write_all", real)
    c = w.add(START_NS, "c.png", b"c" * 700)
    assert c["path"] == a["path"]
    data = (tmp_path / a["path"]).read_bytes()
    found, _, torn = scan(data)
    assert [m.name for m in found] == ["a.png", "c.png"] and not torn
    w.close()


def test_a_member_whose_line_failed_is_taken_back(tmp_path: Path) -> None:
    """undo() after a failed index line removes the member if it is still the last one."""
    w, _ = _writer(tmp_path)
    a = w.add(START_NS, "a.png", b"a" * 100)
    b = w.add(START_NS, "b.png", b"b" * 100)
    w.undo(a)  # not the last one: stays (an orphan that reindex adopts)
    w.undo(b)
    c = w.add(START_NS, "c.png", b"c" * 100)
    assert c["offset"] == b["offset"]
    w.close()
    found, _, torn = scan((tmp_path / a["path"]).read_bytes())
    assert [m.name for m in found] == ["a.png", "c.png"] and not torn


def test_show_open_writes_the_member_under_its_own_name(
    sharded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = next(r for r in imagelog.read(sharded).records() if "member" in r["file"])
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["show", str(sharded), rec["image"]["id"], "--open", str(out)]) == 0
    capsys.readouterr()
    assert [p.name for p in out.iterdir()] == [rec["file"]["member"]]
    assert (out / rec["file"]["member"]).read_bytes() == imagelog.read(sharded).read_bytes(rec)


@pytest.mark.parametrize("name", ["shard_under", "shard_bytes", "max_bytes"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_sizes_that_are_no_number_are_refused_by_name(
    run_dir: Path, name: str, value: float
) -> None:
    with pytest.raises(InvalidSetting, match=f"{name} must be a finite number of bytes"):
        imagelog.open(run_dir, **{name: value})


def test_a_shard_that_cannot_be_put_is_reported_not_raised() -> None:
    """Object stores: a shard whose put fails at a roll does not fail the frame that rolled it;
    the loss is reported, with how many frames it held, and none of their lines is written."""

    class Refusing(MemoryStore):
        def put(self, key: str, data: bytes, *, sync: bool = False) -> None:
            raise OSError("the spool is full")

    reports: list[str] = []
    lines: list[str] = []
    now = [0.0]
    w = ShardWriter(Refusing(), "w-1", append_line=lambda line, _: lines.append(line),
                    max_bytes=2**20, max_age=10.0, sync=False,
                    report=lambda k, e: reports.append(str(e)), clock=lambda: now[0])  # fmt: skip
    for name in ("a", "b"):
        w.commit(w.add(START_NS, f"{name}.png", b"x" * 100), name, START_NS)
    now[0] = 11.0
    c = w.add(START_NS, "c.png", b"y" * 100)  # rolls the first shard: its put fails
    assert c["offset"] == BLOCK and w.lost == 2 and lines == []
    assert len(reports) == 1 and "2 frame(s) in it lost" in reports[0]
    w.close()


def test_retention_counts_what_a_member_takes(run_dir: Path, cam: CameraSimulator) -> None:
    """The running total retention keeps equals a listing of the run: a member counts with its
    tar header and padding."""
    from imagelog.retention import Retention

    with imagelog.open(run_dir, format="png", shard_under="64KiB") as log:
        for i in range(10):
            log.log(cam.frame(), i=i)
    store = make_store(run_dir)
    counted = Retention(store, max_bytes=2**40)
    for rec in imagelog.read(run_dir).records():
        counted.add(rec)
    listed = Retention(store, max_bytes=2**40)
    listed.scan()
    assert len(shards_of(run_dir)) == 1
    summaries = sum(p.stat().st_size for p in (run_dir / "index").glob("*.summary.json"))
    # the one shard is closed: its trailer; the closed hour's summary is counted by the listing
    assert counted.total + len(TRAILER) + summaries == listed.total


@pytest.mark.parametrize("offset", [-1, 0, "512", 1.5, True])
def test_a_hand_made_offset_names_no_member(sharded: Path, tmp_path: Path, offset: Any) -> None:
    """An index line whose file.offset is not a byte count past a header: read as missing, by
    every reader (load, verify, export), never a crash or bytes from elsewhere in the shard."""
    run = imagelog.read(sharded)
    rec = next(r for r in run.records() if "offset" in r["file"])
    bad = {
        **rec,
        "file": {**rec["file"], "offset": offset},
        "image": {**rec["image"], "id": "bad-1"},
    }
    with pytest.raises(FileNotFoundError, match="name no member"):
        run.load(bad)
    seg = next((sharded / "index").glob("*.jsonl"))
    with open(seg, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(bad) + "\n")
    report = verify(imagelog.read(sharded), sample=1.0)
    assert [(f.kind, f.detail[:13]) for f in report.findings] == [("missing", "record bad-1:")]
    out = export(imagelog.read(sharded), tmp_path / "out", to="imagefolder")
    assert out.samples == 31 and out.gaps == {"missing": 1}


def test_frames_a_trigger_saves_from_the_ring_go_into_shards(
    run_dir: Path, cam: CameraSimulator
) -> None:
    """Ring frames are held encoded without their record; the trigger embeds it and the member
    holds it, as a lone file would."""
    frames = [cam.frame() for _ in range(40)]
    with imagelog.open(run_dir, ring="60s", format="png", shard_under="64KiB") as log:
        for i, f in enumerate(frames):
            log.log(f, i=i, captured_at=1_700_000_000 + i / 10)
        log.trigger("defect", before="1s", after="0s", at=1_700_000_000 + 3.0)
        assert log.flush(PATIENCE)
    run = imagelog.read(run_dir)
    recs = list(run.records())
    assert [r["meta"]["i"] for r in recs] == list(range(20, 31))
    for r in recs:
        assert "member" in r["file"] and np.array_equal(run.load(r), frames[r["meta"]["i"]])
        inside = imagelog.codecs.embedded_record(run.read_bytes(r))
        assert inside["labels"]["trigger"] == r["labels"]["trigger"]
    assert not verify(run, sample=1.0).damaged


def test_every_cut_of_a_shard_keeps_whole_members_only() -> None:
    """A shard cut at any byte: scan returns the members that are whole, in order, and says
    torn exactly when the cut is not at a member's end."""
    parts = [tar_member(f"{i}.png", bytes([i]) * n, 0) for i, n in enumerate((1, 511, 512, 1300))]
    data = b"".join(parts)
    ends = [sum(len(p) for p in parts[: i + 1]) for i in range(len(parts))]
    full, _, _ = scan(data)
    for cut in range(len(data) + 1):
        found, end, torn = scan(data[:cut])
        whole = sum(1 for e in ends if e <= cut)
        assert found == full[:whole]
        assert end == (ends[whole - 1] if whole else 0)
        assert torn == (cut != end)
        for m in found:
            assert data[m.offset : m.offset + m.size] == bytes([int(m.name[0])]) * m.size


def test_show_of_a_shard_file_says_what_it_is(
    sharded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["show", str(shards_of(sharded)[0])]) == 1
    err = capsys.readouterr().err
    assert "a shard of small images" in err and len(err.strip().splitlines()) == 1


def test_a_batch_of_members_is_one_write_per_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """add_many writes the members bound for one shard with one write(); a write that fails
    half way is cut back and returned, the members of the shard before it stay stored."""
    import errno

    import imagelog._shards as shards_mod

    real = shards_mod._write_all
    writes: list[int] = []

    def counted(fd: int, parts: list[bytes]) -> None:
        writes.append(len(parts))
        real(fd, parts)

    monkeypatch.setattr(shards_mod, "_write_all", counted)
    w, _ = _writer(tmp_path)
    files, error = w.add_many([(START_NS, f"{i}.png", bytes([i]) * 300) for i in range(5)])
    assert error is None and len(writes) == 1 and len(files) == 5
    # the next hour's members go to a shard of their own: one write each, the first one kept
    items = [(START_NS + HOUR, "x.png", b"x" * 300), (START_NS + 2 * HOUR, "y.png", b"y" * 300)]

    def fail_second(fd: int, parts: list[bytes]) -> None:
        if len(writes) == 2:
            writes.append(len(parts))
            real(fd, [b"".join(parts)[:100]])
            raise OSError(errno.ENOSPC, "No space left on device")
        counted(fd, parts)

    monkeypatch.setattr(shards_mod, "_write_all", fail_second)
    kept, error = w.add_many(items)
    assert isinstance(error, OSError) and [f["member"] for f in kept] == ["x.png"]
    w.close()
    for f in (*files, *kept):
        data = (tmp_path / f["path"]).read_bytes()
        assert data[f["offset"] : f["offset"] + f["size"]] in {
            bytes([i]) * 300 for i in range(5)
        } | {b"x" * 300}
    for shard in shards_of(tmp_path):
        found, _, torn = scan(shard.read_bytes())
        assert not torn and [m.name for m in found] in (
            [f"{i}.png" for i in range(5)],
            ["x.png"],
            [],
        )


def _queued_then_written(run_dir: Path, cam: CameraSimulator, n: int, **kw: Any) -> ImageLog:
    """A log whose workers start only once ``n`` frames are queued (so one worker takes them
    together)."""
    from imagelog._pipeline import Pipeline

    log = imagelog.open(run_dir, format="png", shard_under="64KiB", workers=1, **kw)
    start = Pipeline.start
    Pipeline.start = lambda self: None  # type: ignore[method-assign]
    try:
        for i in range(n):
            log.log(cam.frame(), i=i)
    finally:
        Pipeline.start = start  # type: ignore[method-assign]
    log._pipeline.start()
    return log


def test_frames_queued_together_go_in_with_one_write_and_one_index_append(
    run_dir: Path, cam: CameraSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small frames a worker finds queued are written together: one shard write and one index
    append for the batch, each frame its own member and record."""
    import imagelog._shards as shards_mod
    from imagelog.index import IndexWriter

    writes: list[int] = []
    appends: list[int] = []
    real_write, real_append = shards_mod._write_all, IndexWriter._append

    def write(fd: int, parts: list[bytes]) -> None:
        writes.append(len(parts))
        real_write(fd, parts)

    def append(self: IndexWriter, by_hour: dict[str, list[str]]) -> None:
        appends.append(sum(map(len, by_hour.values())))
        real_append(self, by_hour)

    monkeypatch.setattr(shards_mod, "_write_all", write)
    monkeypatch.setattr(IndexWriter, "_append", append)
    log = _queued_then_written(run_dir, cam, 20)
    log.close()
    assert appends == [20] and len(writes) == 2  # the members, then the trailer at close
    run = imagelog.read(run_dir)
    recs = list(run.records())
    assert sorted(r["meta"]["i"] for r in recs) == list(range(20))
    assert len({r["file"]["offset"] for r in recs}) == 20
    for r in recs:
        assert run.load(r).shape == (24, 32, 3)
    assert not verify(run, sample=1.0).damaged


def test_a_batch_whose_write_fails_is_failed_frame_by_frame(
    run_dir: Path, cam: CameraSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at a batch's shard write: every frame of it is counted failed with its own
    record, none is indexed as logged, and the shard keeps no part of them."""
    import errno

    import imagelog._shards as shards_mod

    def full(fd: int, parts: list[bytes]) -> None:
        data = b"".join(parts)
        os.write(fd, data[: len(data) // 3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards_mod, "_write_all", full)
    log = _queued_then_written(run_dir, cam, 12, strict=False)
    assert log.flush(PATIENCE)
    monkeypatch.undo()
    log.close()
    stats = log.stats()
    assert stats["failed"] == 12 and stats["written"] == 0
    recs = list(imagelog.read(run_dir).records(include_events=True))
    assert sorted(r["meta"]["i"] for r in recs) == list(range(12))
    assert {r["event"]["action"] for r in recs} == {"failed"}
    assert all(scan(p.read_bytes())[0] == [] for p in shards_of(run_dir))


def test_short_writes_go_on_where_they_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writev() that takes only part of the members (a signal, a pipe-like file) is called
    again for the rest, from the byte where it stopped."""
    real = os.writev

    def short(fd: int, buffers: list[memoryview]) -> int:
        return real(fd, [b"".join(bytes(b) for b in buffers)[:700]])

    monkeypatch.setattr(os, "writev", short)
    w, _ = _writer(tmp_path)
    data = [bytes([i]) * (100 + 400 * i) for i in range(6)]
    files, error = w.add_many([(START_NS, f"{i}.png", d) for i, d in enumerate(data)])
    monkeypatch.undo()
    w.close()
    assert error is None
    raw = (tmp_path / files[0]["path"]).read_bytes()
    found, _, torn = scan(raw)
    assert not torn and [m.name for m in found] == [f"{i}.png" for i in range(6)]
    assert [raw[f["offset"] : f["offset"] + f["size"]] for f in files] == data


def test_only_small_frames_still_to_encode_take_others_along() -> None:
    """A worker takes more queued items along only after an event line or a small frame: a
    large frame, or one a ring trigger took (encoded already), keeps the other worker busy."""
    from imagelog._jobs import EventJob, FrameJob
    from imagelog._pipeline import _batchable
    from imagelog._queue import Item
    from imagelog.frames import normalise

    def job(shape: tuple[int, ...], encoded: bytes | None = None) -> Item:
        frame = normalise(np.zeros(shape, np.uint8), copy=False)
        codec, params = imagelog.codecs.resolve("png", dtype="uint8", channels=3)
        return Item(FrameJob(frame, {}, codec, params, START_NS, "cam", encoded=encoded), 0)

    assert _batchable(job((128, 128, 3)))
    assert _batchable(Item(EventJob({}, START_NS), 0))
    assert not _batchable(job((1080, 1920, 3)))
    assert not _batchable(job((128, 128, 3), encoded=b"png bytes"))


def test_a_failing_on_written_hook_is_reported_and_the_frames_stay_written(
    run_dir: Path, cam: CameraSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """An ``on_written`` hook that raises does not stop the encoder nor turn stored frames
    into failed ones: the error is reported, every frame is written and indexed."""
    log = imagelog.open(run_dir, format="png", shard_under="64KiB", strict=False)

    def broken(rec: dict[str, Any]) -> None:
        raise RuntimeError("hook broke")

    log._pipeline.on_written.append(broken)
    for i in range(40):
        log.log(cam.frame(), i=i)
    assert log.flush(PATIENCE)
    log.close()
    assert (log.stats()["written"], log.stats()["failed"]) == (40, 0)
    assert len(list(imagelog.read(run_dir).records())) == 40
    assert "hook broke" in caplog.text

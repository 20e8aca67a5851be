"""Crashes: kill -9 at random moments, torn lines, truncated files, verify, reindex, fsync."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import imagelog
from imagelog import cli
from imagelog.audit import verify
from imagelog.codecs import embedded_record
from imagelog.index import IndexWriter
from imagelog.samples import CameraSimulator
from imagelog.stores import MemoryStore

from ..conftest import PATIENCE, kill9_when_ready

CHILD = r"""
import io, sys
import imagelog
from PIL import Image
from imagelog.samples import CameraSimulator

run, fsync, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
cam = CameraSimulator(64, 48, seed=seed)
log = imagelog.open(run, fsync=fsync, formats={"a": "lossless", "b": "png", "c": "tiff"})
i = 0
while True:
    frame = cam.frame()
    if i % 5 == 4:  # camera JPEG bytes: stored as they are, the record in a sidecar
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=80)
        log.log(buf.getvalue(), source="jpeg", i=i)
    else:
        log.log(frame, source="abc"[i % 3], i=i)
    i += 1
    if i == 30:
        log.flush()
        print("ready", flush=True)
"""


def _images(run_dir: Path) -> dict[str, Path]:
    """Image files (not sidecars, not temporary files) by key."""
    out = {}
    for path in (run_dir / "images").rglob("*"):
        name = path.name
        if path.is_file() and ".tmp-" not in name and not name.endswith(".json"):
            out[path.relative_to(run_dir).as_posix()] = path
    return out


def _verify_json(run_dir: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    rc = cli.main(["verify", str(run_dir), "--json", *args])
    return rc, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("seed", "fsync"), [(1, "none"), (2, "index"), (3, "all"), (4, "none")])
def test_kill9_at_a_random_moment(
    run_dir: Path, capsys: pytest.CaptureFixture[str], seed: int, fsync: str
) -> None:
    """kill -9 while logging: verify finds no damage (every line points at a whole, decodable
    file), and reindex finds every image again, with the same records."""
    proc = kill9_when_ready([sys.executable, "-c", CHILD, str(run_dir), fsync, str(seed)],
                            random.Random(seed).uniform(0.05, 0.6))  # fmt: skip
    assert proc.returncode == -signal.SIGKILL
    rc, report = _verify_json(run_dir, capsys, "--sample", "1")
    assert rc == 0, report["findings"][:5]
    assert report["records"] >= 30
    before = {r["image"]["id"]: r for r in imagelog.read(run_dir).records()}
    files = _images(run_dir)
    assert report["files"] == len(files)
    assert cli.main(["reindex", str(run_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == len(files)
    after = {r["image"]["id"]: r for r in imagelog.read(run_dir).records()}
    assert len(after) == len(files)
    assert set(before) <= set(after)
    for rid, rec in before.items():
        assert after[rid]["file"] == rec["file"]
        assert after[rid]["meta"] == rec["meta"]
    rc, report = _verify_json(run_dir, capsys, "--sample", "1")
    assert rc == 0
    assert report["counts"]["orphan"] == 0


class TestDamageIsDetected:
    @pytest.fixture(name="small_run")
    def _small_run(self, run_dir: Path, camera: CameraSimulator) -> Path:
        with imagelog.open(run_dir, format="png") as log:
            for i in range(6):
                log.log(camera.frame(), source="cam", i=i)
        return run_dir

    def test_truncated_index_segment(
        self, small_run: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A segment cut in the middle of its last line: verify says torn and exits non-zero;
        --repair quarantines the torn line, and the image it named is found as an orphan."""
        (segment,) = (small_run / "index").glob("*.jsonl")
        data = segment.read_bytes()
        segment.write_bytes(data[: len(data) - 200])
        rc, report = _verify_json(small_run, capsys)
        assert rc == 1
        assert report["counts"]["torn"] == 1
        assert report["records"] == 5
        rc, report = _verify_json(small_run, capsys, "--repair")
        assert rc == 0
        assert report["counts"]["orphan"] == 1
        assert list((small_run / "quarantine").iterdir())

    def test_truncated_image_file(
        self, small_run: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An image file cut short is found (size differs from the index) and verify exits 1."""
        rec = list(imagelog.read(small_run).records())[2]
        path = small_run / rec["file"]["path"]
        path.write_bytes(path.read_bytes()[:-100])
        rc, report = _verify_json(small_run, capsys)
        assert rc == 1
        assert [f["key"] for f in report["findings"]] == [rec["file"]["path"]]
        assert report["counts"]["size"] == 1
        assert cli.main(["verify", str(small_run)]) == 1
        assert "DAMAGED" in capsys.readouterr().out

    def test_corrupt_and_missing_files(
        self, small_run: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Same-size corruption fails the hash; a deleted file is missing; both exit 1."""
        recs = list(imagelog.read(small_run).records())
        path = small_run / recs[0]["file"]["path"]
        data = bytearray(path.read_bytes())
        data[-20] ^= 0xFF
        path.write_bytes(bytes(data))
        (small_run / recs[1]["file"]["path"]).unlink()
        rc, report = _verify_json(small_run, capsys)
        assert rc == 1
        assert report["counts"]["hash"] == 1
        assert report["counts"]["missing"] == 1


def test_torn_tail_of_a_dead_writer_is_repaired_on_open(
    run_dir: Path, camera: CameraSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A dead writer's segment ending in a torn line is repaired by the next open (background):
    the torn bytes go to quarantine/ and readers no longer warn."""
    with imagelog.open(run_dir, format="png") as log:
        for _ in range(3):
            log.log(camera.frame())
    (segment,) = (run_dir / "index").glob("*.jsonl")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    torn = segment.with_name(f"{segment.name[:13]}_deadbeef-{dead}.jsonl")
    segment.rename(torn)
    with torn.open("ab") as fh:
        fh.write(b'{"@timestamp": "2024-01-0')
    with caplog.at_level("WARNING", logger="imagelog"):
        assert len(list(imagelog.read(run_dir).records())) == 3
    assert any("torn" in r.getMessage() for r in caplog.records)
    imagelog.open(run_dir).close()  # the next open repairs
    assert torn.read_bytes().endswith(b"\n")
    (quarantined,) = (run_dir / "quarantine").iterdir()
    assert quarantined.read_bytes() == b'{"@timestamp": "2024-01-0\n'
    caplog.clear()
    with caplog.at_level("WARNING", logger="imagelog"):
        assert len(list(imagelog.read(run_dir).records())) == 3
    assert not caplog.records


def test_reindex_rebuilds_a_lost_index(
    run_dir: Path, camera: CameraSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """With index/ deleted, reindex rebuilds every record (size and hash recomputed) from the
    images: PNG, JPEG XL, TIFF and sidecars alike."""
    with imagelog.open(run_dir) as log:
        log.log(camera.frame(), source="jxl", format="lossless", n=1)
        log.log(camera.frame(), source="png", format="png", n=2)
        log.log(camera.frame()[..., 0].astype("float32"), source="tiff", n=3)
        log.log(camera.frame(), source="jpeg", format="preview", n=4)
    before = list(imagelog.read(run_dir).records())
    for seg in (run_dir / "index").iterdir():
        seg.unlink()
    assert cli.main(["reindex", str(run_dir)]) == 0
    assert "4 of 4 image(s)" in capsys.readouterr().out
    after = list(imagelog.read(run_dir).records())
    assert after == before
    assert cli.main(["verify", str(run_dir), "--all"]) == 0


def test_embedded_record_of_every_format(run_dir: Path, camera: CameraSimulator) -> None:
    """Every codec's file carries the record that reindex reads back."""
    with imagelog.open(run_dir) as log:
        for fmt in ("png", "jxl", "webp", "tiff", "jpeg"):
            log.log(camera.frame(), source=fmt, format=fmt)
    run = imagelog.read(run_dir)
    recs = list(run.records())
    assert sorted(r["image"]["format"] for r in recs) == ["jpeg", "jxl", "png", "tiff", "webp"]
    for rec in recs:
        data = run.read_bytes(rec)
        sidecar = rec["imagelog"].get("sidecar")
        found = json.loads((run_dir / sidecar).read_text()) if sidecar else embedded_record(data)
        assert found is not None, rec["image"]["format"]
        assert found["image"]["id"] == rec["image"]["id"]


class TestGroupCommit:
    def test_index_fsync_is_grouped(self) -> None:
        """fsync="index" syncs at most once per interval however many lines come, and sync()
        (flush) syncs what is waiting."""
        now = [0.0]
        store = MemoryStore()
        syncs: list[int] = []
        writer = IndexWriter(store, "w-1", sync=True, sync_every=0.05, clock=lambda: now[0])
        seg = writer._segment_for("2024-01-01T00")
        seg.sync = lambda: syncs.append(1)  # type: ignore[method-assign]
        for i in range(100):
            writer.append({"i": i}, 1_704_067_200 * 10**9)
        assert syncs == []
        now[0] += 0.06
        writer.append({"i": 100}, 1_704_067_200 * 10**9)
        assert len(syncs) == 1
        writer.append({"i": 101}, 1_704_067_200 * 10**9)
        assert len(syncs) == 1
        writer.sync()
        assert len(syncs) == 2
        writer.sync()
        assert len(syncs) == 2  # nothing new to sync

    def test_zero_interval_syncs_every_append(self) -> None:
        """sync_every=0 is the per-line fsync (what the benchmark compares against)."""
        store = MemoryStore()
        syncs: list[int] = []
        writer = IndexWriter(store, "w-1", sync=True, sync_every=0)
        seg = writer._segment_for("2024-01-01T00")
        seg.sync = lambda: syncs.append(1)  # type: ignore[method-assign]
        for i in range(10):
            writer.append({"i": i}, 1_704_067_200 * 10**9)
        assert len(syncs) == 10

    @pytest.mark.parametrize("fsync", ["none", "index", "all"])
    def test_policies_fsync_what_they_promise(
        self, run_dir: Path, fsync: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Counted on the real os.fsync: "none" never syncs; "index" syncs index segments only;
        "all" also syncs every image (and its folder) before the rename. Each run verifies clean."""
        synced: list[str] = []
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        cam = CameraSimulator(64, 48, seed=1)
        with imagelog.open(run_dir, fsync=fsync, format="png") as log:
            for _ in range(20):
                log.log(cam.frame())
            assert log.flush(timeout=PATIENCE)
        report = verify(imagelog.read(run_dir), sample=1.0)
        assert report.records == 20
        assert not report.findings
        root = str(run_dir.resolve())
        index = [p for p in synced if p.startswith(f"{root}/index/")]
        images = {p for p in synced if p.startswith(f"{root}/images/") and ".tmp-" in p}
        folders = {p for p in synced if Path(p).is_dir()}
        if fsync == "none":
            assert synced == []
            return
        assert index, synced  # at least flush()'s group commit
        assert all(p.endswith(".jsonl") for p in index)
        if fsync == "index":
            assert not images
            assert not folders
            return
        written = {str((run_dir / r["file"]["path"]).resolve())
                   for r in imagelog.read(run_dir).records()}  # fmt: skip
        assert len(written) == 20
        # each image was synced under its temporary name, then its folder after the rename
        finals = {str(Path(p).parent / Path(p).name[1:].split(".tmp-")[0]) for p in images}
        assert finals == written
        assert {str(Path(p).parent) for p in written} <= folders


class TestReindexHidesNoDamage:
    """verify reports damage; reindex rebuilds the index and keeps that damage visible, and
    neither one's advice sends you to the other and back."""

    @pytest.fixture(name="damaged")
    def _damaged(self, run_dir: Path, camera: CameraSimulator) -> tuple[Path, list[Any]]:
        with imagelog.open(run_dir, format="png") as log:
            for i in range(4):
                log.log(camera.frame(), source="cam", i=i)
        recs = list(imagelog.read(run_dir).records())
        flipped = run_dir / recs[0]["file"]["path"]
        data = bytearray(flipped.read_bytes())
        data[-20] ^= 0xFF  # inside the last chunk: the bytes change, the size does not
        flipped.write_bytes(bytes(data))
        (run_dir / recs[1]["file"]["path"]).unlink()
        cut = run_dir / recs[2]["file"]["path"]
        cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
        return run_dir, recs

    def test_reindex_keeps_hash_size_and_missing_findings(
        self, damaged: tuple[Path, list[Any]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A changed image keeps failing its hash, a truncated one its size, and a deleted
        image's record stays, named by verify, after reindex."""
        run_dir, recs = damaged
        rc, before = _verify_json(run_dir, capsys, "--all")
        assert rc == 1
        assert [before["counts"][k] for k in ("hash", "missing", "size")] == [1, 1, 1]
        assert cli.main(["verify", str(run_dir), "--all"]) == 1
        advice = capsys.readouterr().out
        assert "reindex rebuilds" not in advice and "restore" in advice
        assert cli.main(["reindex", str(run_dir), "--json"]) == 1
        summary = json.loads(capsys.readouterr().out)
        assert summary["damaged"] == [recs[0]["file"]["path"], recs[2]["file"]["path"]]
        assert summary["missing"] == [recs[1]["image"]["id"]]
        rc, after = _verify_json(run_dir, capsys, "--all")
        assert rc == 1 and after["counts"] == before["counts"]
        assert recs[1]["image"]["id"] in {
            f["detail"].split()[-1] for f in after["findings"] if f["kind"] == "missing"
        }
        assert [r["image"]["id"] for r in imagelog.read(run_dir).records()] == [
            r["image"]["id"] for r in recs
        ]

    def test_an_unadoptable_file_is_damage_not_an_orphan(
        self, damaged: tuple[Path, list[Any]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With the index lost, a truncated image is not adopted: verify calls it damaged
        (never "an orphan reindex adopts"), reindex leaves a damaged event naming it, and
        verify still reports it afterwards."""
        run_dir, recs = damaged
        cut = recs[2]["file"]["path"]
        for seg in (run_dir / "index").iterdir():
            seg.unlink()
        rc, before = _verify_json(run_dir, capsys)
        assert rc == 1
        kinds = {f["key"]: f["kind"] for f in before["findings"]}
        assert kinds[cut] == "damaged"
        assert cli.main(["reindex", str(run_dir), "--json"]) == 1
        assert cut in json.loads(capsys.readouterr().out)["unrecoverable"]
        events = [r for r in imagelog.read(run_dir).records(include_events=True)
                  if r["event"]["action"] == "damaged"]  # fmt: skip
        assert cut in [e["file"]["path"] for e in events]
        rc, after = _verify_json(run_dir, capsys)
        assert rc == 1
        assert {f["key"]: f["kind"] for f in after["findings"]}[cut] == "damaged"

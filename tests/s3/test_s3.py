"""S3 against a real server (SeaweedFS): round trips, many writers, outages, kill -9, credentials."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench.seaweed import SeaweedFS

import imagelog
from imagelog import cli
from imagelog.samples import CameraSimulator

pytestmark = pytest.mark.s3

WRITER = Path(__file__).with_name("writer_proc.py")


def _frames(n: int, seed: int = 1) -> list[np.ndarray[Any, Any]]:
    cam = CameraSimulator(160, 120, seed=seed)
    return [cam.frame() for _ in range(n)]


def _check_pixels(run: imagelog.Run, frames: list[np.ndarray[Any, Any]]) -> None:
    recs = list(run.records())
    assert recs, "no records to check"
    assert len({r["meta"]["i"] for r in recs}) == len(recs)  # no frame twice
    for rec in recs:
        assert np.array_equal(run.load(rec), frames[rec["meta"]["i"]])


class TestRoundTrip:
    def test_pixel_exact_through_storage_options(
        self, s3_url: str, opts: dict[str, Any], camera: CameraSimulator
    ) -> None:
        """Lossless frames logged to s3:// come back pixel-exact, in order, with their records."""
        frames = _frames(12)
        with imagelog.open(s3_url, storage_options=opts) as log:
            for i, frame in enumerate(frames):
                log.log(frame, source="cam1", i=i)
        run = imagelog.read(s3_url, storage_options=opts)
        recs = list(run.records())
        assert [r["meta"]["i"] for r in recs] == list(range(12))
        _check_pixels(run, frames)
        assert all(r["image"]["lossless"] for r in recs)
        assert run.manifest()["schema"] == 1
        assert log.stats()["store"]["spooled"] == 0

    def test_credentials_from_aws_variables_and_cli(
        self,
        s3_url: str,
        seaweed: SeaweedFS,
        spool_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """AWS_* variables alone reach the server; imagelog ls/stats read the s3:// run."""
        for key, value in seaweed.env().items():
            monkeypatch.setenv(key, value)
        frames = _frames(5)
        with imagelog.open(s3_url, storage_options={"spool_dir": str(spool_dir)}) as log:
            for i, frame in enumerate(frames):
                log.log(frame, source="cam2", i=i)
        assert cli.main(["stats", s3_url, "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["images"] == 5
        assert summary["writers"] == 1
        assert summary["by_source"]["cam2"]["images"] == 5
        assert cli.main(["ls", s3_url, "--json", "-n", "0"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [json.loads(line)["meta"]["i"] for line in lines] == list(range(5))

    def test_flush_makes_index_lines_visible(self, s3_url: str, opts: dict[str, Any]) -> None:
        """After flush() a reader sees every record, though the index part interval is long."""
        frames = _frames(6)
        log = imagelog.open(s3_url, storage_options={**opts, "index_interval": 3600})
        try:
            for i, frame in enumerate(frames):
                log.log(frame, i=i)
            assert log.flush()
            run = imagelog.read(s3_url, storage_options=opts)
            assert len(list(run.records())) == 6
            assert all(re.search(r"_[0-9a-f]{8}-\d+\.\d{6}\.jsonl$", k) for k in run.segments())
        finally:
            log.close()

    def test_ranged_reads_and_the_cursor(self, s3_url: str, opts: dict[str, Any]) -> None:
        """The store's ranged reads and sizes, and the records engine's cursor over index parts,
        against a real server; a summary is left when the log closes."""
        from imagelog.records import SegmentCursor

        log = imagelog.open(s3_url, storage_options=opts)
        for i, frame in enumerate(_frames(3)):
            log.log(frame, i=i)
        log.close()
        run = imagelog.read(s3_url, storage_options=opts)
        (key,) = run.segments()
        whole = run.store.get(key)
        assert run.store.size(key) == len(whole)
        assert run.store.read(key, 5, 25) == whole[5:25]
        assert run.store.read(key, len(whole) - 3, len(whole) + 100) == whole[-3:]
        cursor = SegmentCursor(run.store)
        got = [json.loads(line)["meta"]["i"] for line in cursor.lines()]
        assert sorted(got) == [0, 1, 2] and list(cursor.lines()) == []  # lines as stored
        assert any(o.key.endswith(".summary.json") for o in run.store.list("index/"))
        assert cli.summarise(run)["images"] == 3

    def test_large_image_goes_up_in_parts(self, s3_url: str, opts: dict[str, Any]) -> None:
        """A 1080p 16-bit frame bigger than the multipart chunk is stored whole and exact."""
        cam = CameraSimulator(1920, 1080, seed=3)
        frame = cam.frame().astype(np.uint16) * 257
        with imagelog.open(s3_url, storage_options=opts, format="tiff:compression=none") as log:
            log.log(frame, i=0)
        run = imagelog.read(s3_url, storage_options=opts)
        (rec,) = run.records()
        assert rec["file"]["size"] > 8 * 2**20
        assert np.array_equal(run.load(rec), frame)


class TestErrorsAtOpen:
    def test_wrong_credentials(self, s3_url: str, opts: dict[str, Any]) -> None:
        """A wrong secret fails at open() with a StoreError that names the credentials."""
        bad = {**opts, "secret_access_key": "not-the-secret"}
        with pytest.raises(imagelog.StoreError, match="credentials were refused"):
            imagelog.open(s3_url, storage_options=bad)
        with pytest.raises(imagelog.StoreError, match="credentials were refused"):
            imagelog.read(s3_url, storage_options=bad)

    def test_missing_bucket(self, opts: dict[str, Any]) -> None:
        """A bucket that does not exist fails at open() and is not created."""
        with pytest.raises(imagelog.StoreError, match="does not exist"):
            imagelog.open("s3://no-such-bucket-here/run", storage_options=opts)

    def test_unknown_storage_option(self, s3_url: str, opts: dict[str, Any]) -> None:
        """A misspelt storage option is rejected by name."""
        with pytest.raises(imagelog.InvalidSetting, match="spool_max_byte"):
            imagelog.open(s3_url, storage_options={**opts, "spool_max_byte": 1})


class TestManyWriters:
    def test_four_processes_into_one_prefix(self, s3_url: str, opts: dict[str, Any]) -> None:
        """4 processes x 200 frames give exactly 800 records, 800 objects, 4 writers, no collision."""
        procs = [
            subprocess.Popen(
                [sys.executable, str(WRITER), s3_url, json.dumps(opts), "plain", "200"],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0]
        stats = [json.loads(out.splitlines()[-1]) for out in outs]
        assert [s["written"] for s in stats] == [200] * 4
        run = imagelog.read(s3_url, storage_options=opts)
        recs = list(run.records())
        assert len(recs) == 800
        assert len({r["image"]["id"] for r in recs}) == 800
        assert len({r["file"]["path"] for r in recs}) == 800
        assert len({r["imagelog"]["writer"] for r in recs}) == 4
        ids = [r["image"]["id"] for r in recs]
        assert ids == sorted(ids)  # merged in time order
        images = [o for o in run.store.list("images/") if not o.key.endswith(".json")]
        assert len(images) == 800
        for pid in {r["meta"]["pid"] for r in recs}:
            mine = [r["meta"]["i"] for r in recs if r["meta"]["pid"] == pid]
            assert sorted(mine) == list(range(200))
        assert cli.summarise(run)["writers"] == 4


class TestOutages:
    def test_server_stopped_mid_run_every_frame_arrives(
        self, outage_server: SeaweedFS, s3_url: str, spool_dir: Path
    ) -> None:
        """Stop SeaweedFS while logging, restart it on the same data: every frame arrives."""
        outage_server.start()
        opts = {**outage_server.storage_options(), "spool_dir": str(spool_dir),
                "index_interval": 0.5}  # fmt: skip
        frames = _frames(90, seed=5)
        log = imagelog.open(s3_url, storage_options=opts, format="png")
        try:
            for i in range(30):
                log.log(frames[i], source="cam", i=i)
            assert log.flush()
            stopper = threading.Thread(target=outage_server.stop, args=(2.0,))
            stopper.start()  # the server goes away while the next frames are logged
            for i in range(30, 60):
                log.log(frames[i], source="cam", i=i)
            stopper.join()
            assert log.flush()  # returns: what the server did not take is in the spool
            during = log.stats()["store"]
            assert during["pending"] > 0
            assert during["network_errors"] > 0
            outage_server.start()
            for i in range(60, 90):
                log.log(frames[i], source="cam", i=i)
        finally:
            log.close()
        after = log.stats()
        assert after["written"] == 90
        assert after["store"]["pending"] == 0
        run = imagelog.read(s3_url, storage_options=opts)
        assert sorted(r["meta"]["i"] for r in run.records()) == list(range(90))
        _check_pixels(run, frames)
        assert not any(spool_dir.iterdir())  # the spool folder is cleaned up

    def test_kill_9_while_server_down_then_restart_uploads_the_spool(
        self, outage_server: SeaweedFS, s3_url: str, spool_dir: Path
    ) -> None:
        """kill -9 of a writer while the server is down; a new process uploads its whole spool."""
        outage_server.start()
        opts = {**outage_server.storage_options(), "spool_dir": str(spool_dir),
                "index_interval": 3600}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), s3_url, json.dumps(opts), "crash", "20", "15"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            assert proc.stdout.readline().strip() == "flushed"
            outage_server.kill()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            assert line.startswith("ready"), line
            spooled = json.loads(line.split(" ", 1)[1])
            assert spooled["pending"] >= 30
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        (folder,) = (p for p in spool_dir.iterdir() if p.is_dir())
        assert len(list(folder.glob("*.d"))) >= 30
        assert any((folder / "journal").iterdir())  # the last 15 lines were never put as a part
        outage_server.start()
        run_before = imagelog.read(s3_url, storage_options=opts)
        assert len(list(run_before.records())) == 20
        log = imagelog.open(s3_url, storage_options=opts)
        log.close()
        store = log.stats()["store"]
        assert store["adopted"] >= 31
        assert store["journal_parts_recovered"] == 1
        assert store["pending"] == 0
        run = imagelog.read(s3_url, storage_options=opts)
        recs = list(run.records())
        assert sorted(r["meta"]["i"] for r in recs) == list(range(50))
        for rec in recs:
            assert run.load(rec).shape == (120, 160, 3)
        assert not any(spool_dir.iterdir())

    def test_full_spool_drops_are_counted_and_recorded(
        self, outage_server: SeaweedFS, s3_url: str, spool_dir: Path
    ) -> None:
        """Opened while the server is down, a small spool drops frames: counted, then recorded."""
        outage_server.stop(2.0)
        opts = {**outage_server.storage_options(), "spool_dir": str(spool_dir),
                "spool_max_bytes": 400_000, "index_interval": 0.5}  # fmt: skip
        frames = _frames(40, seed=9)
        log = imagelog.open(s3_url, storage_options=opts, format="png")
        try:
            for i, frame in enumerate(frames):
                log.log(frame, source="cam", i=i)
            assert log.flush()
            stats = log.stats()
            dropped = stats["dropped_by_reason"].get("spool_full", 0)
            assert dropped > 0
            assert stats["written"] + dropped == 40
            assert stats["store"]["dropped"] == dropped
            outage_server.start()
        finally:
            log.close()
        run = imagelog.read(s3_url, storage_options=opts)
        events = list(run.records(include_events=True))
        drops = [r for r in events if r["event"]["action"] == "dropped"]
        assert len(drops) == dropped
        assert {r["event"]["reason"] for r in drops} == {"spool_full"}
        kept = list(run.records())
        assert len(kept) == 40 - dropped
        _check_pixels(run, frames)


class TestOrderOnTheServer:
    def test_no_index_part_is_visible_before_its_images(
        self, s3_url: str, opts: dict[str, Any]
    ) -> None:
        """Watched on the real server while logging: whenever an index part can be listed,
        every image its lines point at can already be read."""
        frames = _frames(40, seed=4)
        log = imagelog.open(s3_url, storage_options={**opts, "index_interval": 0.05}, format="png")
        reader = imagelog.read(s3_url, storage_options=opts).store
        done = threading.Event()

        def write() -> None:
            try:
                for i, frame in enumerate(frames):
                    log.log(frame, source="cam", i=i)
                    if i % 8 == 7:
                        log.flush()  # a part now, while later frames are still being written
            finally:
                log.close()
                done.set()

        writer = threading.Thread(target=write)
        writer.start()
        seen: set[str] = set()
        checked = 0
        while True:
            finished = done.is_set()  # a last pass after the writer is done
            for obj in list(reader.list("index/")):
                if obj.key in seen or not obj.key.endswith(".jsonl"):
                    continue
                seen.add(obj.key)
                for line in reader.get(obj.key).splitlines():
                    path = json.loads(line)["file"]["path"]
                    assert reader.exists(path), f"{obj.key} listed before {path}"
                    checked += 1
            if finished:
                break
        writer.join()
        assert len(seen) >= 2  # parts appeared while frames were still being written
        assert checked == 40


def _hours_of_frames(url: str, opts: dict[str, Any], hours: int, per_hour: int) -> None:
    """Log ``per_hour`` frames in each of ``hours`` hours (an injected clock), to s3://."""
    from imagelog.logger import ImageLog
    from imagelog.settings import Settings
    from imagelog.stores import make_store

    now = [1_704_067_200 * 10**9]
    cam = CameraSimulator(160, 120, seed=2)
    log = ImageLog(make_store(url, storage_options=opts), Settings(format="png"),
                   clock=lambda: now[0])  # fmt: skip
    with log:
        for h in range(hours):
            for k in range(per_hour):
                log.log(cam.frame(), source="cam", i=h * per_hour + k)
                now[0] += 3600 * 10**9 // per_hour


class TestStorageVerbs:
    """verify, reindex, purge and retention on an s3:// run, through the CLI as users run them."""

    @pytest.fixture(autouse=True)
    def _aws_env(self, seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in seaweed.env().items():
            monkeypatch.setenv(key, value)

    def _cli_json(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
        rc = cli.main([*args, "--json"])
        return rc, json.loads(capsys.readouterr().out)

    def test_verify_finds_damage(
        self, s3_url: str, opts: dict[str, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """verify --all passes a whole run, then exits 1 naming an image changed on the server."""
        _hours_of_frames(s3_url, opts, hours=1, per_hour=6)
        rc, report = self._cli_json(capsys, "verify", s3_url, "--all")
        assert rc == 0, report["findings"]
        assert report["records"] == 6
        run = imagelog.read(s3_url, storage_options=opts)
        victim = next(run.records())["file"]["path"]
        data = bytearray(run.store.get(victim))
        data[-20] ^= 0xFF
        run.store.put(victim, bytes(data))
        rc, report = self._cli_json(capsys, "verify", s3_url, "--all")
        assert rc == 1
        assert any(victim in json.dumps(f) for f in report["findings"])

    def test_reindex_rebuilds_a_lost_index(
        self, s3_url: str, opts: dict[str, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With every index part deleted, reindex finds every image's record again."""
        _hours_of_frames(s3_url, opts, hours=2, per_hour=3)
        run = imagelog.read(s3_url, storage_options=opts)
        before = {r["image"]["id"]: r["file"] for r in run.records()}
        assert len(before) == 6
        run.store.delete([o.key for o in run.store.list("index/")])
        assert list(run.records()) == []
        rc, summary = self._cli_json(capsys, "reindex", s3_url)
        assert rc == 0
        assert summary["records"] == 6
        after = {r["image"]["id"]: r["file"] for r in run.records()}
        assert after == before

    def test_purge_drops_the_oldest_hours(
        self, s3_url: str, opts: dict[str, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """purge --max-bytes removes whole oldest hours (images and index) and records it."""
        _hours_of_frames(s3_url, opts, hours=4, per_hour=3)
        run = imagelog.read(s3_url, storage_options=opts)
        total = sum(o.size for o in run.store.list("images/"))
        rc, _ = self._cli_json(capsys, "purge", s3_url, "--max-bytes", str(total // 2))
        assert rc == 0
        left = [r["meta"]["i"] for r in run.records()]
        assert left, "everything was purged"
        assert left == list(range(12 - len(left), 12))  # the newest survive, the oldest went
        assert len(left) < 12
        assert sum(o.size for o in run.store.list("images/")) <= total // 2
        events = [r for r in run.records(include_events=True) if r["event"]["action"] == "purged"]
        assert events

    def test_max_bytes_while_logging(self, s3_url: str, opts: dict[str, Any]) -> None:
        """open(s3://..., max_bytes=...) keeps the run under its quota as hours pass."""
        from imagelog.logger import ImageLog
        from imagelog.settings import Settings
        from imagelog.stores import make_store

        now = [1_704_067_200 * 10**9]
        cam = CameraSimulator(160, 120, seed=3)
        settings = Settings.from_kwargs(format="png", max_bytes=200_000)
        with ImageLog(make_store(s3_url, storage_options=opts), settings,
                      clock=lambda: now[0]) as log:  # fmt: skip
            for i in range(40):
                log.log(cam.frame(), source="cam", i=i)
                now[0] += 600 * 10**9
                assert log.flush(timeout=120)
        run = imagelog.read(s3_url, storage_options=opts)
        kept = [r["meta"]["i"] for r in run.records()]
        assert kept and kept[-1] == 39
        assert len(kept) < 40
        size = sum(o.size for o in run.store.list("images/"))
        assert size <= 200_000 * 1.2
        assert any(r["event"]["action"] == "purged" for r in run.records(include_events=True))

"""The ring: frames held until a trigger saves a window of them; the rest expire, summed up."""

from __future__ import annotations

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
from imagelog.samples import CameraSimulator

T0 = 1_764_000_000 * 10**9  # capture times (ns) of the synthetic frame sequences
FPS = 240


def cap(i: int, fps: int = FPS) -> int:
    """The capture time (ns) of frame ``i`` at ``fps``."""
    return T0 + i * 10**9 // fps


@pytest.fixture(name="small", scope="module")
def _small() -> list[np.ndarray[Any, Any]]:
    cam = CameraSimulator(64, 48, seed=3)
    return [cam.frame() for _ in range(8)]


def logged(run_dir: Path) -> list[dict[str, Any]]:
    return list(imagelog.read(run_dir).records())


def events(run_dir: Path, action: str) -> list[dict[str, Any]]:
    return [
        r
        for r in imagelog.read(run_dir).records(include_events=True)
        if r["event"]["action"] == action
    ]


def expired_seqs(run_dir: Path) -> set[int]:
    out: set[int] = set()
    for rec in events(run_dir, "expired"):
        for a, b in rec["imagelog"]["expired"]["seqs"]:
            out.update(range(a, b + 1))
    return out


def assert_books_balance(run_dir: Path, stats: dict[str, Any]) -> None:
    """Every seq log() handed out is in exactly one of: a logged record, a dropped/failed
    record, an expired summary; and the counters agree with the index."""
    everything = list(imagelog.read(run_dir).records(include_events=True))
    per_frame = [r["image"]["seq"] for r in everything if r["event"]["action"] in
                 ("logged", "dropped", "failed")]  # fmt: skip
    summed = expired_seqs(run_dir)
    assert len(per_frame) == len(set(per_frame)), "a frame recorded twice"
    assert not summed & set(per_frame), "a frame both recorded and expired"
    assert set(per_frame) | summed == set(range(1, stats["logged"] + 1))
    summary_frames = sum(r["imagelog"]["expired"]["frames"] for r in events(run_dir, "expired"))
    assert summary_frames == stats["expired"] == len(summed)
    assert (
        stats["logged"] == stats["written"] + stats["dropped"] + stats["failed"] + stats["expired"]
    )


def test_window_is_frame_accurate_at_240_fps(run_dir: Path, small: list[Any]) -> None:
    """A trigger saves exactly the frames captured in [at - before, at + after], both ends
    included, including the frames of the post window that arrive after the call."""
    log = imagelog.open(run_dir, ring="5s", max_queue_bytes="256 MiB", format="png:level=1")
    with log:
        for i in range(2400):  # 10 s at 240 fps
            log.log(small[i % 8], source="cam", captured_at=cap(i))
            if i == 1200:
                tid = log.trigger("defect", before="3s", after="1s", at=cap(1200))
        assert log.flush()
        mid = log.stats()
    recs = logged(run_dir)
    seqs = sorted(r["image"]["seq"] for r in recs)
    assert seqs == list(range(1200 - 720 + 1, 1200 + 240 + 2))  # seq = i + 1
    assert {r["event"]["reason"] for r in recs} == {"defect"}
    assert {r["labels"]["trigger"] for r in recs} == {tid}
    assert {r["imagelog"]["trigger"] for r in recs} == {tid}
    assert mid["triggered"] == len(recs) == 961 and mid["triggers"] == 1
    (trig,) = events(run_dir, "triggered")
    assert trig["event"]["id"] == tid and trig["event"]["reason"] == "defect"
    # the saved images hold their record, trigger included
    run = imagelog.read(run_dir)
    first = min(recs, key=lambda r: r["image"]["seq"])
    assert run.load(first).shape == (48, 64, 3)
    from imagelog.codecs import embedded_record

    inside = embedded_record(run.read_bytes(first))
    assert inside is not None and inside["labels"]["trigger"] == tid
    assert_books_balance(run_dir, log.stats())


def test_overlapping_triggers_merge_without_duplicates(run_dir: Path, small: list[Any]) -> None:
    """Two overlapping windows save their union once; each frame carries the first trigger that
    saved it."""
    with imagelog.open(run_dir, ring="10s", max_queue_bytes="256 MiB") as log:
        for i in range(960):
            log.log(small[i % 8], source="cam", captured_at=cap(i))
        first = log.trigger("collision", before="1s", after="0.5s", at=cap(600))  # 360..720
        second = log.trigger("alarm", before="1s", after="1s", at=cap(700))  # 460..940
        assert log.flush()
    by_trigger = Counter(r["labels"]["trigger"] for r in logged(run_dir))
    seqs = [r["image"]["seq"] - 1 for r in logged(run_dir)]
    assert sorted(seqs) == list(range(360, 941))
    assert by_trigger == {first: 720 - 360 + 1, second: 940 - 720}
    reasons = {r["image"]["seq"] - 1: r["event"]["reason"] for r in logged(run_dir)}
    assert reasons[720] == "collision" and reasons[721] == "alarm"
    assert_books_balance(run_dir, log.stats())


def test_trigger_for_some_sources(run_dir: Path, small: list[Any]) -> None:
    """``sources=`` saves those sources' frames only; the others keep expiring."""
    with imagelog.open(run_dir, ring="10s") as log:
        for i in range(100):
            for src in ("left", "right"):
                log.log(small[i % 8], source=src, captured_at=cap(i))
        log.trigger("defect", sources=["left"], at=cap(99))
        assert log.flush()
        assert log.stats()["by_source"]["left"]["triggered"] == 100
        assert log.stats()["by_source"]["right"]["triggered"] == 0
    assert {r["image"]["source"] for r in logged(run_dir)} == {"left"}
    assert log.stats()["by_source"]["right"]["expired"] == 100
    assert_books_balance(run_dir, log.stats())


def test_duration_bound_per_source(run_dir: Path, small: list[Any]) -> None:
    """``ring="1s"`` keeps the last second of each source; older frames expire in summaries."""
    with imagelog.open(run_dir, ring="1s", max_queue_bytes="256 MiB") as log:
        for i in range(FPS * 5):
            log.log(small[i % 8], source="a", captured_at=cap(i))
            if i % 4 == 0:
                log.log(small[i % 8], source="b", captured_at=cap(i))
        assert log.flush()
        held = log.stats()
        log.trigger("look", at=cap(FPS * 5))  # before=None: all the ring holds
        assert log.flush()
    saved = Counter(r["image"]["source"] for r in logged(run_dir))
    assert saved == {"a": FPS + 1, "b": FPS // 4 + 1}  # [newest - 1 s, newest], ends included
    assert held["ring_frames"] == FPS + 1 + FPS // 4 + 1
    assert held["by_source"]["a"]["expired"] == FPS * 5 - FPS - 1
    summaries = events(run_dir, "expired")
    assert len(summaries) >= 3  # one per ring's worth (1 s), not one per frame
    assert_books_balance(run_dir, log.stats())


def test_ring_per_source(run_dir: Path, small: list[Any]) -> None:
    """``ring={source: duration}`` holds only those sources, each for its own duration; the
    other sources are written as usual."""
    with imagelog.open(run_dir, ring={"fast": "1s", "slow": "2s"}) as log:
        for i in range(FPS * 3):
            log.log(small[i % 8], source="fast", captured_at=cap(i))
            if i % FPS == 0:
                log.log(small[i % 8], source="overview", captured_at=cap(i))
            if i % 24 == 0:
                log.log(small[i % 8], source="slow", captured_at=cap(i))
        assert log.flush()
        held = log.stats()
        log.trigger("look", at=cap(FPS * 3))
        assert log.flush()
    saved = Counter(
        r["image"]["source"] for r in logged(run_dir) if "trigger" in r.get("labels", {})
    )
    written = Counter(
        r["image"]["source"] for r in logged(run_dir) if "trigger" not in r.get("labels", {})
    )
    assert written == {"overview": 3}
    assert saved == {"fast": FPS + 1, "slow": 21}  # 1 s at 240 fps; 2 s at 10 fps, ends included
    assert held["by_source"]["overview"]["expired"] == 0
    assert_books_balance(run_dir, log.stats())


def test_module_level_trigger(run_dir: Path, small: list[Any]) -> None:
    """``imagelog.trigger()`` triggers the default log of ``imagelog.init()``; the reason is
    positional or ``reason=``, there and on ``ImageLog.trigger``."""
    log = imagelog.init(run_dir, ring="10s")
    try:
        for i in range(5):
            imagelog.log(small[i], source="cam", captured_at=cap(i))
        tid = imagelog.trigger(reason="defect", before=2 / FPS)  # at: the last frame logged (4)
        imagelog.log(small[5], source="cam", captured_at=cap(7))
        tid2 = log.trigger(reason="scratch", before=0, at=cap(7))
        other = imagelog.trigger("dent", before=0, at=cap(9))
        assert log.flush()
    finally:
        log.close()
    assert {r["image"]["seq"] - 1: r["labels"]["trigger"] for r in logged(run_dir)} == {
        2: tid,
        3: tid,
        4: tid,
        5: tid2,
    }
    reasons = {r["event"]["id"]: r["event"]["reason"] for r in events(run_dir, "triggered")}
    assert reasons == {tid: "defect", tid2: "scratch", other: "dent"}


def test_bytes_bound(run_dir: Path, small: list[Any]) -> None:
    """``ring_bytes`` caps the encoded bytes held; the queue gets the rest of max_queue_bytes."""
    with imagelog.open(run_dir, ring_bytes="64 KiB", max_queue_bytes="1 MiB") as log:
        for i in range(500):
            log.log(small[i % 8], source="cam", captured_at=cap(i))
        assert log.flush()
        s = log.stats()
        assert s["max_ring_bytes"] == 64 * 1024
        assert s["max_queue_bytes"] == 1024 * 1024 - 64 * 1024
        assert 0 < s["peak_ring_bytes"] <= 64 * 1024
        assert 0 < s["ring_frames"] < 500
        assert s["expired"] == 500 - s["ring_frames"]
        log.trigger("keep", at=cap(499))
        assert log.flush()
        assert log.stats()["triggered"] == s["ring_frames"]
    assert_books_balance(run_dir, log.stats())


def test_bad_ring_settings_fail_at_open(run_dir: Path) -> None:
    with pytest.raises(ValueError, match="ring: cannot parse"):
        imagelog.open(run_dir, ring="soon")
    with pytest.raises(ValueError, match="ring_bytes must be positive and below"):
        imagelog.open(run_dir, ring="10s", ring_bytes="2 GiB", max_queue_bytes="1 GiB")
    with pytest.raises(ValueError, match="ring must be a positive"):
        imagelog.open(run_dir, ring=0)
    with pytest.raises(ValueError, match="ring\\['cam'\\]: cannot parse"):
        imagelog.open(run_dir, ring={"cam": "later"})
    with pytest.raises(ValueError, match="source names to durations"):
        imagelog.open(run_dir, ring={})
    with imagelog.open(run_dir) as log, pytest.raises(RuntimeError, match="no ring"):
        log.trigger("defect")
    with imagelog.open(run_dir, ring="1s") as log:
        with pytest.raises(ValueError, match="reason"):
            log.trigger("")
        with pytest.raises(ValueError, match="before: cannot parse"):
            log.trigger("x", before="a while")
        with pytest.raises(TypeError, match="list of source names"):
            log.trigger("x", sources="cam")


def test_close_expires_what_the_ring_holds(run_dir: Path, small: list[Any]) -> None:
    """Untriggered frames leave nothing but a summary (reason ``close``) and counters."""
    with imagelog.open(run_dir, ring="30s") as log:
        for i in range(50):
            log.log(small[i % 8], source="cam", captured_at=cap(i))
    assert logged(run_dir) == []
    assert not [p for p in run_dir.rglob("*") if p.is_file() and "images" in p.parts]
    (summary,) = events(run_dir, "expired")
    assert summary["event"]["reason"] == "close"
    assert summary["imagelog"]["expired"]["seqs"] == [[1, 50]]
    assert summary["imagelog"]["expired"]["by_source"] == {"cam": 50}
    assert_books_balance(run_dir, log.stats())


def test_post_window_keeps_recording_with_the_log_clock(run_dir: Path, small: list[Any]) -> None:
    """Without captured_at the window is on log time (the injected clock); ``at`` defaults to
    the last frame logged, and frames of the post window are written as they come."""
    from imagelog.settings import Settings
    from imagelog.stores import make_store

    now = [T0]

    def clock() -> int:
        return now[0]

    log = imagelog.ImageLog(make_store(run_dir), Settings.from_kwargs(ring="2s"), clock=clock)
    with log:
        for _ in range(10):  # 0.0 .. 0.9 s
            log.log(small[0], source="cam")
            now[0] += 10**8
        tid = log.trigger("defect", before="0.45s", after="0.5s")  # at 0.9 s: 0.45 .. 1.4 s
        for _ in range(10):  # 1.0 .. 1.9 s
            log.log(small[1], source="cam")
            now[0] += 10**8
        assert log.flush()
    saved = sorted(r["image"]["seq"] for r in logged(run_dir) if r["labels"]["trigger"] == tid)
    assert saved == list(range(6, 16))  # 0.5 .. 1.4 s
    assert_books_balance(run_dir, log.stats())


def test_trigger_from_another_process(run_dir: Path, small: list[Any]) -> None:
    """``imagelog trigger RUN`` in a second process saves this process's ring window."""
    with imagelog.open(run_dir, ring="1h") as log:
        for i in range(40):
            log.log(small[i % 8], source="cam", captured_at=cap(i))
        at = cap(30) / 1e9
        out = subprocess.run(
            [sys.executable, "-m", "imagelog", "trigger", str(run_dir), "--reason", "operator",
             "--before", "0.05s", "--at", repr(at)],
            check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        tid = out.stdout.strip()
        deadline = time.monotonic() + 60
        while log.stats()["triggers"] < 1:  # the maintenance thread polls every second
            assert time.monotonic() < deadline, "the trigger file was not picked up"
            time.sleep(0.05)
        assert log.flush()
    recs = logged(run_dir)
    assert {r["labels"]["trigger"] for r in recs} == {tid}
    assert {r["event"]["reason"] for r in recs} == {"operator"}
    # frames 18..30: [cap(30) - 0.05 s, cap(30)], ends included
    assert sorted(r["image"]["seq"] - 1 for r in recs) == list(range(18, 31))
    (trig,) = events(run_dir, "triggered")
    assert trig["imagelog"]["trigger"]["origin"] == "file"
    assert_books_balance(run_dir, log.stats())


def test_a_trigger_file_is_applied_once_and_not_by_later_writers(run_dir: Path) -> None:
    """A writer applies a trigger file once; one left before it opened, never."""
    from imagelog._cli_ring import write_trigger

    imagelog.open(run_dir).close()
    write_trigger(str(run_dir), "old", before=1.0, at_ns=T0, require_writer=False)
    with imagelog.open(run_dir, ring="1s") as log:
        log._pipeline.ring.poll_triggers()  # type: ignore[union-attr]
        assert log.stats()["triggers"] == 0
        write_trigger(str(run_dir), "new", at_ns=T0)
        log._pipeline.ring.poll_triggers()  # type: ignore[union-attr]
        log._pipeline.ring.poll_triggers()  # type: ignore[union-attr]
        assert log.stats()["triggers"] == 1


def test_trigger_verb_refuses_a_missing_run_and_a_run_without_ring_writers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``imagelog trigger`` on a mistyped path creates nothing; on a run with no live ring
    writer it leaves nothing; both say why on one line and exit 1."""
    from imagelog.cli import main

    missing = tmp_path / "typo"
    assert main(["trigger", str(missing), "--reason", "defect"]) == 1
    assert not missing.exists()
    assert "no imagelog run" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    imagelog.open(run_dir).close()  # a writer without a ring
    assert main(["trigger", str(run_dir), "--reason", "defect"]) == 1
    err = capsys.readouterr().err
    assert "no ring writer is live" in err and err.count("\n") == 1
    assert not (run_dir / "triggers").exists() or not any((run_dir / "triggers").iterdir())
    with imagelog.open(run_dir, ring="1s"):
        assert main(["trigger", str(run_dir), "--reason", "defect", "--source", ""]) == 1
        assert "--source must name a source" in capsys.readouterr().err
        assert main(["trigger", str(run_dir), "--reason", "defect", "--at", "1764000000123"]) == 1
        assert "milliseconds" in capsys.readouterr().err
        assert main(["trigger", str(run_dir), "--reason", "defect"]) == 0
    assert capsys.readouterr().out.strip()


def test_trigger_files_and_announcements_are_removed(run_dir: Path) -> None:
    """A ring writer announces itself while open and removes its announcement on close; trigger
    files older than KEEP_S are removed by the writers' poll."""
    from imagelog._cli_ring import write_trigger
    from imagelog._trigger_files import KEEP_S, live_ring_writers
    from imagelog.stores import make_store

    triggers = run_dir / "triggers"
    with imagelog.open(run_dir, ring="1s") as log:
        assert live_ring_writers(make_store(run_dir)) == [log.writer]
        tid = write_trigger(str(run_dir), "defect", at_ns=T0)
        keeper = log._pipeline.ring
        assert keeper is not None
        keeper.poll_triggers()
        assert (triggers / f"{tid}.json").exists()
        old = time.time() - KEEP_S - 1
        os.utime(triggers / f"{tid}.json", (old, old))
        keeper.poll_triggers()
        assert not (triggers / f"{tid}.json").exists()
        assert log.stats()["triggers"] == 1
    assert not triggers.exists() or not list(triggers.iterdir())
    assert live_ring_writers(make_store(run_dir)) == []


CRASH_CHILD = """
import sys, imagelog
from imagelog.samples import CameraSimulator
T0 = 1_764_000_000 * 10**9
cam = CameraSimulator(64, 48, seed=3)
frames = [cam.frame() for _ in range(8)]
log = imagelog.open(sys.argv[1], ring="10s")
for i in range(200):
    log.log(frames[i % 8], source="cam", captured_at=T0 + i * 10**9 // 240)
log.trigger("defect", before=0.25, at=T0 + 100 * 10**9 // 240)
log.flush()
print("ready", flush=True)
i = 200
while True:
    log.log(frames[i % 8], source="cam", captured_at=T0 + i * 10**9 // 240)
    i += 1
"""


def test_kill9_keeps_saved_windows_and_loses_the_memory_ring(run_dir: Path) -> None:
    """kill -9 after a trigger: its window is on storage and readable; frames held only in the
    in-memory ring are gone (no image, no line)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(run_dir)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    proc.stdout.close()
    run = imagelog.read(run_dir)
    recs = list(run.records())
    assert sorted(r["image"]["seq"] - 1 for r in recs) == list(range(40, 101))
    for rec in recs:
        assert run.load(rec).shape == (48, 64, 3)
    images = [p for p in (run_dir / "images").rglob("*") if p.is_file()]
    assert len(images) == len(recs)  # nothing of the untriggered frames reached the disk


def test_retention_with_a_ring(run_dir: Path, camera: CameraSimulator) -> None:
    """Saved windows are ordinary records: retention counts and purges them like any other."""
    frame = camera.frame()
    with imagelog.open(run_dir, ring="10s", max_bytes="600 KB", format="png:level=1") as log:
        for k in range(4):
            for i in range(40):
                log.log(frame, source="cam", captured_at=cap(k * 100 + i))
            log.trigger("defect", at=cap(k * 100 + 39), before="1s")
            assert log.flush()
        s = log.stats()
    assert s["triggered"] == 160
    stored = sum(p.stat().st_size for p in (run_dir / "images").rglob("*") if p.is_file())
    assert 0 < stored <= 600_000
    assert len(logged(run_dir)) < 160  # the oldest saved frames were purged
    assert events(run_dir, "purged")


RING_DIR_CHILD = """
import sys, imagelog
from imagelog.samples import CameraSimulator
T0 = 1_764_000_000 * 10**9
cam = CameraSimulator(64, 48, seed=3)
frames = [cam.frame() for _ in range(8)]
log = imagelog.open(sys.argv[1], ring="1h", ring_dir=sys.argv[2], format="png")
for i in range(100):
    log.log(frames[i % 8], source="cam", captured_at=T0 + i * 10**9 // 240)
log.flush()
print(log.writer, flush=True)
sys.stdin.read()
"""


def test_kill9_with_ring_dir_a_later_trigger_still_saves(
    run_dir: Path, tmp_path: Path, small: list[Any]
) -> None:
    """With ``ring_dir=``, the frames a killed writer held are adopted by the next writer: a
    trigger (in-process, or left by ``imagelog trigger`` while no writer ran) saves them with the
    dead writer's ids and seqs, and the rest expire in the dead writer's books."""
    from imagelog._cli_ring import write_trigger

    ring_dir = tmp_path / "ring"
    proc = subprocess.Popen(
        [sys.executable, "-c", RING_DIR_CHILD, str(run_dir), str(ring_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    dead = proc.stdout.readline().decode().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    proc.stdout.close()
    proc.stdin.close()
    assert len(list((ring_dir / dead).glob("*.ring"))) == 100
    assert logged(run_dir) == []
    notes: list[str] = []  # no writer is live: it waits for the one that adopts the frames
    left = write_trigger(str(run_dir), "operator", before=0.0, at_ns=cap(10), notes=notes)
    assert len(notes) == 1 and f"ring_dir={ring_dir}" in notes[0] and dead in notes[0]
    with imagelog.open(run_dir, ring="1h", ring_dir=ring_dir, format="png") as log:
        assert log.stats()["adopted"] == 100
        tid = log.trigger("crash", before="0.1s", at=cap(99))  # frames 75..99
        deadline = time.monotonic() + 60
        while log.stats()["triggers"] < 2:  # the trigger file, polled by the maintenance thread
            assert time.monotonic() < deadline, "the trigger file was not picked up"
            time.sleep(0.05)
        assert log.flush()
    run = imagelog.read(run_dir)
    recs = list(run.records())
    got = {r["image"]["seq"] - 1: r["labels"]["trigger"] for r in recs}
    assert got == {10: left, **dict.fromkeys(range(75, 100), tid)}
    assert {r["imagelog"]["writer"] for r in recs} == {dead}
    for rec in recs:
        assert np.array_equal(run.load(rec), small[(rec["image"]["seq"] - 1) % 8])
    (summary,) = events(run_dir, "expired")
    assert summary["imagelog"]["writer"] == dead
    assert summary["imagelog"]["expired"]["seqs"] == [[1, 10], [12, 75]]
    assert not ring_dir.exists() or not any(ring_dir.rglob("*.ring"))


def test_small_lossless_frames_keep_their_record_inside(run_dir: Path, small: list[Any]) -> None:
    """The lossless preset stores small frames as TIFF, which has no place for a record after
    encoding: a saved frame is encoded again with its record inside, pixel-exact, no sidecar."""
    from imagelog.codecs import embedded_record

    with imagelog.open(run_dir, ring="10s") as log:
        for i in range(10):
            log.log(small[i % 8], source="cam", captured_at=cap(i))
        tid = log.trigger("defect", at=cap(9))
    run = imagelog.read(run_dir)
    recs = list(run.records())
    assert len(recs) == 10 and {r["image"]["format"] for r in recs} == {"tiff"}
    for rec in recs:
        assert "sidecar" not in rec["imagelog"]
        inside = embedded_record(run.read_bytes(rec))
        assert inside is not None and inside["labels"]["trigger"] == tid
        assert np.array_equal(run.load(rec), small[(rec["image"]["seq"] - 1) % 8])


@pytest.mark.parametrize("name", ["bayer_rggb12", "nv12", "yuyv", "mono16"])
@pytest.mark.parametrize("ring_dir", [False, True])
def test_camera_pixel_formats_through_the_ring(
    run_dir: Path, tmp_path: Path, name: str, ring_dir: bool
) -> None:
    """Frames in a camera pixel format are held as _write_frame would store them (planes
    side by side) and come back exactly as delivered, from memory or from ring_dir."""
    from tests.test_pixfmt import delivered

    from imagelog import pixfmt

    frame = delivered(pixfmt.parse(name))
    extra: dict[str, Any] = {"ring_dir": tmp_path / "ring"} if ring_dir else {}
    with imagelog.open(run_dir, ring="10s", **extra) as log:
        for i in range(3):
            log.log(frame, pixel_format=name, source="cam", captured_at=cap(i))
        log.trigger("defect", at=cap(2))
    run = imagelog.read(run_dir)
    recs = list(run.records())
    assert len(recs) == 3
    for rec in recs:
        assert rec["image"]["pixel_format"] == name
        np.testing.assert_array_equal(run.load(rec), frame)


def test_a_dead_writers_announcement_is_not_a_live_writer(tmp_path: Path) -> None:
    """A ring writer of this host is live while its process runs (a kill -9 leaves its
    announcement behind: not live); one of another host while it announced itself lately."""
    import json
    import socket

    from imagelog._trigger_files import ALIVE_S, live_ring_writers
    from imagelog.cli import main
    from imagelog.stores import make_store

    run_dir = tmp_path / "run"
    imagelog.open(run_dir).close()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (run_dir / "triggers").mkdir()
    here = {"host": socket.gethostname(), "pid": int(dead), "ring_dir": None}
    (run_dir / "triggers" / f"ab12-{dead}.alive").write_text(json.dumps(here))
    far = run_dir / "triggers" / "cd34-77.alive"
    far.write_text(json.dumps({"host": "elsewhere", "pid": 77, "ring_dir": None}))
    store = make_store(run_dir)
    assert live_ring_writers(store) == ["cd34-77"]
    stale = time.time() - ALIVE_S - 1
    os.utime(far, (stale, stale))
    assert live_ring_writers(store) == []
    assert main(["trigger", str(run_dir), "--reason", "defect"]) == 1

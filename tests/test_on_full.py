"""The byte-bounded queue and its policies: block, drop_oldest, drop_newest; drops are recorded."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog import codecs
from imagelog._priority import lower_priority
from imagelog._queue import ByteQueue, Item
from imagelog.codecs import register
from imagelog.codecs.png import PNG
from imagelog.frames import BufferPool
from imagelog.settings import OnFull

from .conftest import PATIENCE, returns, wait_for


class SlowPNG(PNG):
    """PNG that waits for a gate before encoding, so the queue can be filled deterministically;
    ``entered`` is released once per frame a worker has taken (and holds, at the gate)."""

    name = "slowpng"
    gate = threading.Event()
    entered = threading.Semaphore(0)

    def encode(self, pixels: Any, params: Any) -> bytes:
        self.entered.release()
        self.gate.wait(PATIENCE)
        return super().encode(pixels, params)


@pytest.fixture(name="gate")
def _gate() -> Iterator[threading.Event]:
    """The gate closed, SlowPNG registered for this test only; opened and removed after it."""
    SlowPNG.gate.clear()
    SlowPNG.entered = threading.Semaphore(0)
    register(SlowPNG())
    yield SlowPNG.gate
    SlowPNG.gate.set()
    del codecs._REGISTRY[SlowPNG.name]


def _workers_hold(n: int) -> None:
    """Wait until ``n`` frames have reached the encoders (each now blocked on the gate)."""
    for i in range(n):
        assert SlowPNG.entered.acquire(timeout=PATIENCE), f"only {i} of {n} frames reached a worker"


def _frame(i: int) -> np.ndarray[Any, Any]:
    return np.full((32, 32), i, np.uint8)  # 1,024 bytes each


@pytest.mark.parametrize(
    ("policy", "kept"), [("drop_newest", [0, 1, 2, 3]), ("drop_oldest", [0, 1, 8, 9])]
)
def test_drop_policies(run_dir: Path, gate: threading.Event, policy: str, kept: list[int]) -> None:
    """With the encoders stuck, a 4-frame queue keeps the first or the last frames; drops are records."""
    log = imagelog.open(
        run_dir, format="slowpng", on_full=policy, max_queue_bytes=4 * 1024, workers=2
    )
    log.log(_frame(0), i=0)
    log.log(_frame(1), i=1)
    _workers_hold(2)  # both workers now hold a frame, blocked on the gate
    for i in range(2, 10):
        log.log(_frame(i), i=i)
    st = log.stats()
    assert st["queue_bytes"] <= 4 * 1024
    assert st["dropped"] == 6
    assert st["dropped_by_reason"] == {"queue_full": 6}
    gate.set()
    log.close()
    run = imagelog.read(run_dir)
    assert [r["meta"]["i"] for r in run.records()] == kept
    drops = [r for r in run.records(include_events=True) if r["event"]["action"] == "dropped"]
    assert len(drops) == 6
    assert {r["event"]["reason"] for r in drops} == {"queue_full"}
    assert sorted(r["meta"]["i"] for r in drops) == sorted(set(range(10)) - set(kept))
    assert all("file" not in r for r in drops)
    recs = list(run.records())
    assert len(recs) == len(kept)
    for r in recs:
        assert int(run.load(r)[0, 0]) == r["meta"]["i"]


def test_block_waits_for_room(run_dir: Path, gate: threading.Event) -> None:
    """on_full='block' makes log() wait while the queue is full, and nothing is dropped."""
    log = imagelog.open(
        run_dir, format="slowpng", on_full="block", max_queue_bytes=2 * 1024, workers=1
    )
    log.log(_frame(0))
    log.log(_frame(1))
    finished = threading.Event()

    def third() -> None:
        log.log(_frame(2))
        finished.set()

    _workers_hold(1)  # the worker holds frame 0: frame 1 and frame 0 fill the 2 KiB
    t = threading.Thread(target=third)
    t.start()
    assert not finished.wait(0.3)  # still blocked: nothing can leave the queue while gated
    assert log.stats()["queue_bytes"] == 2 * 1024
    gate.set()
    assert finished.wait(PATIENCE)
    t.join()
    log.close()
    assert log.stats()["dropped"] == 0
    assert len(list(imagelog.read(run_dir).records())) == 3


def test_close_timeout_counts_what_was_left(run_dir: Path, gate: threading.Event) -> None:
    """close(timeout) never hangs on stuck encoders; what was left is counted as dropped."""
    log = imagelog.open(run_dir, format="slowpng", max_queue_bytes=1 << 20, workers=1, strict=False)
    for i in range(5):
        log.log(_frame(i))
    _workers_hold(1)
    returns(lambda: log.close(timeout=0.3), "close(timeout=0.3) with a stuck encoder")
    st = log.stats()
    assert st["dropped_by_reason"].get("close_timeout", 0) == 4  # all but the one being encoded
    gate.set()
    drops = [r for r in imagelog.read(run_dir).records(include_events=True)
             if r["event"].get("reason") == "close_timeout"]  # fmt: skip
    assert len(drops) == st["dropped_by_reason"]["close_timeout"]


def test_queue_memory_is_bounded_by_bytes() -> None:
    """The queue counts bytes until done(); one oversized item is admitted only when empty."""
    q = ByteQueue(100)
    a, b = Item("a", 60), Item("b", 60)
    assert q.put(a, OnFull.DROP_NEWEST) == []
    assert q.put(b, OnFull.DROP_NEWEST) == [b]
    got = q.get(0)
    assert got is a
    assert q.bytes == 60  # still counted while being processed
    q.done(a)
    assert q.bytes == 0
    big = Item("big", 500)
    assert q.put(big, OnFull.DROP_NEWEST) == []
    assert q.bytes == 500


def test_a_full_queue_is_handled_before_the_copy(run_dir: Path, gate: threading.Event) -> None:
    """drop_oldest evicts for a frame before copying it, but a frame log() refuses evicts
    nothing; drop_newest's dropped frame keeps its record (size, dtype) though never copied."""
    log = imagelog.open(
        run_dir, format="slowpng", on_full="drop_oldest", max_queue_bytes=4 * 1024, workers=2
    )
    log.log(_frame(0), i=0)
    log.log(_frame(1), i=1)
    _workers_hold(2)
    for i in range(2, 4):
        log.log(_frame(i), i=i)  # the queue is now full: 2 x 1 KiB held + 2 x 1 KiB queued
    assert log.stats()["dropped"] == 0
    with pytest.raises(TypeError, match="float64"):
        log.log(np.zeros((32, 32), np.float64))
    with pytest.raises(ValueError, match="channels"):
        log.log(np.zeros((32, 32, 2), np.uint8))
    with pytest.raises(ValueError, match="channel_order"):
        log.log(np.zeros((32, 32, 3), np.uint8), channel_order="XYZ")
    assert log.stats()["dropped"] == 0  # refused frames made no room
    log.log(_frame(4), i=4)
    assert log.stats()["dropped"] == 1
    gate.set()
    log.close()
    assert [r["meta"]["i"] for r in imagelog.read(run_dir).records()] == [0, 1, 3, 4]


def test_drop_newest_records_the_uncopied_frame(run_dir: Path, gate: threading.Event) -> None:
    """A frame drop_newest lets go without copying still has its full ``image.*`` record."""
    log = imagelog.open(
        run_dir, format="slowpng", on_full="drop_newest", max_queue_bytes=2 * 1024, workers=1
    )
    log.log(_frame(0), i=0)
    _workers_hold(1)
    log.log(_frame(1), i=1)
    log.log(_frame(2), i=2)  # 1 KiB held by the worker + 1 KiB queued: no room
    late = np.full((32, 32, 3), 7, np.uint8)
    log.log(late[:, :, ::-1], i=3, channel_order="BGR")  # 3 KiB: does not fit either
    gate.set()
    log.close()
    recs = list(imagelog.read(run_dir).records(include_events=True))
    assert [r["meta"]["i"] for r in recs if r["event"]["action"] == "logged"] == [0, 1]
    drops = {r["meta"]["i"]: r for r in recs if r["event"]["action"] == "dropped"}
    assert sorted(drops) == [2, 3]
    img = drops[3]["image"]
    assert (img["width"], img["height"], img["channels"], img["dtype"]) == (32, 32, 3, "uint8")
    assert img["converted_from"] == "BGR"


def _big(i: int, shape: tuple[int, ...] = (1024, 1024)) -> np.ndarray[Any, Any]:
    return np.full(shape, i, np.uint8)  # 1 MiB: PREPARED_MIN_BYTES


@pytest.fixture(name="unprepared")
def _unprepared(monkeypatch: pytest.MonkeyPatch) -> None:
    """No buffers prepared in the background: only recycled ones are ready."""
    monkeypatch.setattr(BufferPool, "want", lambda self, shape, dtype: None)


@pytest.mark.usefixtures("unprepared")
@pytest.mark.parametrize(("policy", "kept"), [("drop_newest", [0, 1]), ("drop_oldest", [0, 2])])
def test_large_frames_are_copied_only_into_touched_buffers(
    run_dir: Path, gate: threading.Event, policy: str, kept: list[int]
) -> None:
    """Under the drop policies a large frame never gets fresh pages while a frame waits in the
    queue, though the byte bound has room: drop_newest drops it, drop_oldest takes the buffer of
    the oldest queued frame. With nothing waiting it gets a fresh buffer."""
    log = imagelog.open(
        run_dir, format="slowpng", on_full=policy, max_queue_bytes=16 << 20, workers=1
    )
    log.log(_big(0), i=0)
    _workers_hold(1)
    log.log(_big(1), i=1)  # nothing queued: a fresh buffer
    log.log(_big(2), i=2)  # no buffer ready, frame 1 waits
    assert log.stats()["dropped"] == 1
    gate.set()
    log.close()
    recs = list(imagelog.read(run_dir).records(include_events=True))
    assert [r["meta"]["i"] for r in recs if r["event"]["action"] == "logged"] == kept
    drops = [r for r in recs if r["event"]["action"] == "dropped"]
    assert [(r["meta"]["i"], r["event"]["reason"]) for r in drops] == [
        (({0, 1, 2} - set(kept)).pop(), "burst")  # not queue_full: the bound had room
    ]


@pytest.mark.usefixtures("unprepared")
def test_drop_oldest_takes_only_a_buffer_of_the_same_shape(
    run_dir: Path, gate: threading.Event
) -> None:
    """A queued frame of another shape is not let go for a buffer it cannot give."""
    log = imagelog.open(
        run_dir, format="slowpng", on_full="drop_oldest", max_queue_bytes=16 << 20, workers=1
    )
    log.log(_big(0), i=0)
    _workers_hold(1)
    log.log(_big(1, (512, 2048)), i=1)
    log.log(_big(2), i=2)
    gate.set()
    log.close()
    assert log.stats()["dropped"] == 0
    assert [r["meta"]["i"] for r in imagelog.read(run_dir).records()] == [0, 1, 2]


def test_prepared_buffers_keep_a_burst_and_its_pixels(run_dir: Path, gate: threading.Event) -> None:
    """Buffers the pool prepares in the background take frames that would otherwise be dropped;
    a frame changed right after log() returns is stored as it was."""
    log = imagelog.open(
        run_dir, format="slowpng", on_full="drop_newest", max_queue_bytes=16 << 20, workers=1
    )
    first = _big(0)
    log.log(first, i=0)
    _workers_hold(1)
    pool = log._pipeline.pool
    key = (first.shape, first.dtype)
    wait_for(lambda: len(pool._free.get(key, ())) >= 2, "two buffers prepared")
    frames = [_big(1), _big(2)]
    for i, f in enumerate(frames, 1):
        log.log(f, i=i)
        f[:] = 99
    gate.set()
    log.close()
    assert log.stats()["dropped"] == 0
    run = imagelog.read(run_dir)
    assert [int(run.load(r).max()) for r in run.records()] == [0, 1, 2]


def test_the_pool_prepares_within_the_bound() -> None:
    """The preparing thread stops at ``spares`` free buffers or at the room the bound leaves,
    and ends on close()."""
    room = [int(2.5 * (1 << 20))]
    pool = BufferPool(64 << 20, room=lambda: room[0] - pool.bytes, spares=5)
    dtype = np.dtype(np.uint8)
    pool.want((1024, 1024), dtype)
    wait_for(lambda: pool.prepared == 2, "two buffers prepared")
    pool.close(PATIENCE)
    assert pool.prepared == 2 and pool.bytes == 2 << 20
    assert pool.ready((1024, 1024), dtype) and not pool.ready((1024, 1023), dtype)
    assert not any(t.name == "imagelog-buffers" for t in threading.enumerate())


def test_lower_priority_is_harmless_where_not_permitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused (no permission) or elsewhere than Linux (a thread id is no pid): nothing happens."""
    calls: list[int] = []

    def refuse(which: int, who: int, prio: int) -> None:
        calls.append(who)
        raise PermissionError(1, "not permitted")

    monkeypatch.setattr(os, "setpriority", refuse)
    monkeypatch.setattr(sys, "platform", "linux")
    lower_priority(5)
    assert calls == [threading.get_native_id()]
    monkeypatch.setattr(sys, "platform", "darwin")
    lower_priority(5)
    assert len(calls) == 1


def test_a_dropped_frame_takes_no_buffer(
    run_dir: Path, gate: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """drop_newest neither copies nor converts a BGR or strided frame it drops (no buffer taken
    from the pool, none allocated); its record still says what it was."""
    taken: list[tuple[int, ...]] = []
    take = BufferPool.take
    monkeypatch.setattr(BufferPool, "take", lambda self, s, d: taken.append(s) or take(self, s, d))
    log = imagelog.open(
        run_dir, format="slowpng", on_full="drop_newest", max_queue_bytes=2 * 1024, workers=1
    )
    log.log(_frame(0), i=0)
    _workers_hold(1)
    log.log(_frame(1), i=1)
    assert len(taken) == 2
    bgr = np.zeros((32, 32, 3), np.uint8)
    log.log(bgr, i=2, channel_order="BGR")
    log.log(np.zeros((64, 64), np.uint8)[::2, ::2], i=3)  # not contiguous
    assert len(taken) == 2 and log.stats()["dropped"] == 2
    gate.set()
    log.close()
    drops = {
        r["meta"]["i"]: r["image"]
        for r in imagelog.read(run_dir).records(include_events=True)
        if r["event"]["action"] == "dropped"
    }
    assert drops[2]["converted_from"] == "BGR" and drops[2]["channels"] == 3
    assert (drops[3]["width"], drops[3]["height"]) == (32, 32)


def test_drops_in_a_burst_share_one_queue_item(run_dir: Path, gate: threading.Event) -> None:
    """The records of drops made while a batch waits for a worker join it (one queue item, one
    worker wake-up); each still reaches the index once."""
    log = imagelog.open(
        run_dir, format="slowpng", on_full="drop_newest", max_queue_bytes=2 * 1024, workers=1
    )
    log.log(_frame(0), i=0)
    _workers_hold(1)
    log.log(_frame(1), i=1)
    for i in range(2, 12):
        log.log(_frame(i), i=i)
    assert log.stats()["dropped"] == 10
    assert len(log._pipeline.queue) == 3  # frame 0 at the encoder, frame 1, one batch of drops
    gate.set()
    log.close()
    recs = list(imagelog.read(run_dir).records(include_events=True))
    dropped = sorted(r["meta"]["i"] for r in recs if r["event"]["action"] == "dropped")
    assert dropped == list(range(2, 12))

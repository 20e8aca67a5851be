"""The byte-bounded queue and its policies: block, drop_oldest, drop_newest; drops are recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog import codecs
from imagelog._queue import ByteQueue, Item
from imagelog.codecs import register
from imagelog.codecs.png import PNG
from imagelog.settings import OnFull

from .conftest import PATIENCE, returns


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

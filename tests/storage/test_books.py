"""The books balance in the index alone: every id ``log()`` returned is one ``logged``,
``dropped`` or ``failed`` record, even when the disk filled up while frames were logged."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import imagelog
from imagelog.samples import CameraSimulator

Mount = Callable[[str], Path]


@pytest.mark.tmpfs
def test_full_disk_failures_reach_the_index(tmpfs: Mount) -> None:
    """Frames that fail on a full disk (and those failed fast while writing is paused) become
    ``failed`` records; the ones the full index could not take are held (``held_records``) and
    written once space is back, so every returned id has exactly one record."""
    camera = CameraSimulator(160, 120, seed=11)
    fs = tmpfs("4m")
    run_dir = fs / "run"
    log = imagelog.open(run_dir, format="png", strict=False, close_timeout=30)
    ids = [log.log(camera.frame(), source="cam")]
    assert log.flush(timeout=30)
    ballast = fs / "ballast"
    with ballast.open("wb") as fh:  # leave less than one line of index free
        fh.write(b"\0" * max(0, shutil.disk_usage(fs).free - 200))
    ids += [log.log(camera.frame(), source="cam") for _ in range(40)]
    assert log.flush(timeout=30)
    st = log.stats()
    assert st["failed"] > 0
    assert st["logged"] == st["written"] + st["dropped"] + st["failed"]
    on_disk = Counter(r["event"]["action"]
                      for r in imagelog.read(run_dir).records(include_events=True))  # fmt: skip
    assert on_disk["logged"] == st["written"]
    assert on_disk["failed"] + st["held_records"] == st["failed"]  # the rest waits in memory
    ballast.unlink()
    log.close()
    st = log.stats()
    assert (st["held_records"], st["unrecorded"]) == (0, 0)
    recs = list(imagelog.read(run_dir).records(include_events=True))
    assert sorted(r["image"]["id"] for r in recs) == sorted(ids)  # each id exactly once
    by_action = Counter(r["event"]["action"] for r in recs)
    assert by_action == Counter(logged=st["written"], failed=st["failed"], dropped=st["dropped"])
    failed = [r for r in recs if r["event"]["action"] == "failed"]
    assert {r["event"]["reason"] for r in failed} == {"disk_full"}
    assert all(r["error"]["type"] and r["error"]["message"] for r in failed)
    assert not any("file" in r for r in failed)

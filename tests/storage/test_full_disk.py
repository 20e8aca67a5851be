"""Background storage failures on real small filesystems: full, read-only, deleted, nearly full."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog import _report
from imagelog.audit import verify
from imagelog.logger import ImageLog
from imagelog.samples import CameraSimulator

from ..conftest import PATIENCE, returns
from .conftest import inner_outcome

Mount = Callable[[str], Path]


@pytest.fixture(name="camera")
def _camera() -> CameraSimulator:
    return CameraSimulator(160, 120, seed=11)


def _fill(folder: Path, leave: int) -> Path:
    """Write a ballast file that leaves about ``leave`` bytes free on the filesystem."""
    ballast = folder / "ballast"
    free = shutil.disk_usage(folder).free
    with ballast.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return ballast


def _log_until(log: ImageLog, frames: CameraSimulator, done: Callable[[], bool]) -> None:
    """Log frames (flushing) until ``done()``; the deadline only guards against a hang."""
    deadline = time.monotonic() + PATIENCE
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting: {log.stats()}"
        log.log(frames.frame(), source="cam")
        log.flush(timeout=PATIENCE)


def _accounted(stats: dict[str, Any]) -> bool:
    return bool(stats["logged"] == stats["written"] + stats["failed"] + stats["dropped"])


@pytest.mark.tmpfs
def test_full_disk_pauses_counts_and_resumes(
    tmpfs: Mount,
    camera: CameraSimulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOSPC: frames fail (counted by reason), one rate-limited warning, no index line points at
    a partial file, log() never raises, and writing resumes by itself once space is freed."""
    # the warning is once a minute per kind: an hour here, so a slow machine sees one warning too
    monkeypatch.setattr(_report, "REPORT_EVERY", 3600.0)
    fs = tmpfs("4m")
    run_dir = fs / "run"
    log = imagelog.open(run_dir, format="png", strict=False, close_timeout=10)
    log.log(camera.frame(), source="cam")
    assert log.flush(timeout=PATIENCE)
    ballast = _fill(fs, leave=120_000)
    with caplog.at_level(logging.WARNING, logger="imagelog"):
        for _ in range(60):
            log.log(camera.frame(), source="cam")  # never raises, never blocks for long
        assert log.flush(timeout=PATIENCE)
        # paused while the disk stays full: a probe that fails pauses again, so this is reached
        # whenever the background probe runs (it may have been between pauses at the flush)
        _log_until(log, camera, lambda: log.stats()["paused"] == "disk_full")
    st = log.stats()
    assert st["failed_by_reason"].get("disk_full", 0) > 0
    assert _accounted(st)
    warnings = [r for r in caplog.records if "disk_full" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited per kind
    report = verify(imagelog.read(run_dir), sample=1.0)
    assert not report.damaged, report.findings
    assert report.records == st["written"]
    ballast.unlink()
    written = st["written"]
    _log_until(log, camera, lambda: log.stats()["written"] > written + 3)
    assert log.stats()["paused"] is None
    returns(log.close, "close() on a run that was full")  # bounded by close_timeout
    report = verify(imagelog.read(run_dir), sample=1.0)
    assert not report.damaged, report.findings
    assert report.records == log.stats()["written"]


@pytest.mark.tmpfs
def test_index_write_hits_full_disk(tmpfs: Mount) -> None:
    """A segment append that hits ENOSPC is cut back: readers never see half a line."""
    fs = tmpfs("1m")
    run_dir = fs / "run"
    log = imagelog.open(run_dir, format="png", strict=False)
    tiny = np.zeros((4, 4), np.uint8)
    for i in range(3000):  # tiny images: the index fills the disk as fast as the images
        log.log(tiny, source="cam", note="x" * 200, i=i)
    log.close()
    st = log.stats()
    assert st["failed"] > 0
    run = imagelog.read(run_dir)
    report = verify(run, sample=1.0)
    assert not report.damaged, report.findings[:5]
    assert report.records == st["written"]
    assert not report.of("orphan")  # a frame whose line failed took its file away with it


@pytest.mark.tmpfs
def test_read_only_folder(tmpfs: Mount, camera: CameraSimulator) -> None:
    """The run's images folder made read-only (a read-only bind mount over it): frames fail as
    read_only; made writable again, writing resumes by itself."""
    fs = tmpfs("8m")
    run_dir = fs / "run"
    log = imagelog.open(run_dir, format="png", strict=False)
    for _ in range(3):
        log.log(camera.frame(), source="cam")
    assert log.flush(timeout=PATIENCE)
    images = run_dir / "images"
    subprocess.run(["mount", "--bind", str(images), str(images)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(images)], check=True)
    try:
        for _ in range(10):
            log.log(camera.frame(), source="cam")
        assert log.flush(timeout=PATIENCE)
        st = log.stats()
        assert st["failed_by_reason"].get("read_only", 0) > 0
        assert st["written"] == 3
    finally:
        subprocess.run(["umount", str(images)], check=True)
    _log_until(log, camera, lambda: log.stats()["written"] > 5)
    log.close()
    assert _accounted(log.stats())
    report = verify(imagelog.read(run_dir), sample=1.0)
    assert not report.damaged, report.findings
    assert report.records == log.stats()["written"]


def test_deleted_folder_is_made_again(run_dir: Path, camera: CameraSimulator) -> None:
    """The run folder deleted while logging: it is made again and later frames are all indexed."""
    log = imagelog.open(run_dir, format="png", strict=False)
    for _ in range(3):
        log.log(camera.frame(), source="cam")
    assert log.flush(timeout=PATIENCE)
    shutil.rmtree(run_dir)
    for i in range(5):
        log.log(camera.frame(), source="cam", after=i)
    log.close()
    recs = list(imagelog.read(run_dir).records())
    assert [r["meta"]["after"] for r in recs] == list(range(5))
    assert not verify(imagelog.read(run_dir), sample=1.0).damaged


@pytest.mark.tmpfs
def test_min_free_bytes_purges_then_guards(
    tmpfs: Mount, camera: CameraSimulator, open_log: Callable[..., ImageLog], clock: Any
) -> None:
    """min_free_bytes: retention purges the oldest hours to keep space free; with nothing left
    to purge, frames are dropped (reason low_disk) instead of filling the disk."""
    fs = tmpfs("4m")
    run_dir = fs / "run"
    with open_log(run_dir, format="png") as log:
        for _ in range(30):
            clock.tick(600)
            log.log(camera.frame(), source="cam")
    _fill(fs, leave=600_000)
    log = open_log(run_dir, format="png", min_free_bytes=500_000, strict=False)
    for _ in range(20):
        clock.tick(600)
        log.log(camera.frame(), source="cam")
        assert log.flush(timeout=PATIENCE)
    assert shutil.disk_usage(fs).free >= 500_000 - 50_000
    events = [r for r in imagelog.read(run_dir).records(include_events=True)
              if r["event"]["action"] == "purged"]  # fmt: skip
    assert {e["event"]["reason"] for e in events} == {"min_free_bytes"}
    log.close()
    assert _accounted(log.stats())
    assert not verify(imagelog.read(run_dir), sample=1.0).damaged
    # a floor above the filesystem's size: no purge can meet it, so frames are dropped
    log = open_log(run_dir, format="png", min_free_bytes="16m", strict=False)
    for _ in range(5):
        log.log(camera.frame(), source="cam")
    log.close()
    st = log.stats()
    assert st["written"] == 0
    assert st["dropped_by_reason"] == {"low_disk": 5}
    drops = [r for r in imagelog.read(run_dir).records(include_events=True)
             if r["event"]["action"] == "dropped"]  # fmt: skip
    assert [d["event"]["reason"] for d in drops] == ["low_disk"] * 5


def test_an_inner_skip_is_not_a_pass(tmp_path: Path) -> None:
    """A tmpfs test rerun in a user namespace that skipped there is reported as a skip (a
    failure under CI=true): the junit report of a real pytest run is read, not its exit status."""
    (tmp_path / "test_inner.py").write_text(
        "import pytest\n"
        "def test_skips():\n    pytest.skip('no tmpfs in here')\n"
        "def test_passes():\n    pass\n",
        encoding="utf-8",
    )
    outcomes = {}
    for name in ("test_skips", "test_passes"):
        report = tmp_path / f"{name}.xml"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
             str(tmp_path), f"--junitxml={report}", f"{tmp_path / 'test_inner.py'}::{name}"],
            capture_output=True, text=True, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout  # a skip exits 0: the status cannot tell
        outcomes[name] = inner_outcome(report)
    assert outcomes == {"test_skips": "skipped: no tmpfs in here", "test_passes": "passed"}

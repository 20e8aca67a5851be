"""The documented options and inputs each get a test of their own: records(source=...), BGRA,
hash=False, codec_options, worker_nice, IMAGELOG_MAX_QUEUE_BYTES, the Handler's formatter and
error path, and the exit hook with an encoder that never returns."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import imagelog
from imagelog import codecs
from imagelog.audit import verify
from imagelog.codecs.base import Pixels
from imagelog.codecs.png import PNG

from .conftest import PATIENCE


def test_records_by_source_is_the_readme_read_loop(
    run_dir: Path, rgb: np.ndarray[Any, Any]
) -> None:
    """records(source="cam1") yields cam1's records only, oldest first; load() gives each back."""
    frames = [np.ascontiguousarray(np.roll(rgb, 7 * i, axis=1)[:40, :60]) for i in range(6)]
    with imagelog.open(run_dir) as log:
        for i, frame in enumerate(frames):
            log.log(frame, source=f"cam{i % 2 + 1}", i=i)
    run = imagelog.read(run_dir)
    cam1 = list(run.records(source="cam1"))
    assert [r["meta"]["i"] for r in cam1] == [0, 2, 4]
    for rec in cam1:
        pixels = run.load(rec)
        assert pixels.dtype == np.uint8
        assert np.array_equal(pixels, frames[rec["meta"]["i"]])
    assert list(run.records(source="nobody")) == []


def test_bgra_frames_are_stored_as_rgba(run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
    """channel_order="BGRA" (OpenCV with alpha) is stored as RGBA and recorded as converted."""
    rgba = np.dstack([rgb[:40, :60], np.arange(40 * 60, dtype=np.uint8).reshape(40, 60)])
    bgra = np.ascontiguousarray(rgba[..., [2, 1, 0, 3]])
    with imagelog.open(run_dir, format="png") as log:
        log.log(bgra, channel_order="BGRA")
    run = imagelog.read(run_dir)
    (rec,) = run.records()
    assert np.array_equal(run.load(rec), rgba)
    assert rec["image"]["channel_order"] == "RGBA"
    assert rec["image"]["converted_from"] == "BGRA"


def test_hash_false_leaves_out_the_hash(run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
    """hash=False: no file.hash in the record, and verify still checks sizes and decodes."""
    with imagelog.open(run_dir, hash=False, format="png") as log:
        for _ in range(3):
            log.log(rgb)
    run = imagelog.read(run_dir)
    recs = list(run.records())
    assert len(recs) == 3
    assert all("hash" not in r["file"] for r in recs)
    report = verify(run, sample=1.0)
    assert report.records == 3
    assert not report.damaged, report.findings


def test_codec_options_apply_to_the_log_formats_not_to_per_call_ones(
    run_dir: Path, rgb: np.ndarray[Any, Any]
) -> None:
    """codec_options merge into the log's format; format= on a call takes its own parameters."""
    with imagelog.open(run_dir, format="png", codec_options={"level": 9}) as log:
        log.log(rgb, i=0)
        log.log(rgb, format="png:level=2", i=1)
    run = imagelog.read(run_dir)
    params = [r["image"]["encoder"]["params"] for r in run.records()]
    assert params == [{"level": 9}, {"level": 2}]
    with imagelog.open(run_dir, format="png", codec_options={"speed": 1}) as log:
        with pytest.raises(imagelog.FormatMismatch, match="no parameter speed"):
            log.log(rgb)
        assert log.stats()["logged"] == 0


class PriorityProbe(PNG):
    """PNG that notes the CPU priority (nice) of the thread that encodes."""

    name = "priority-probe"
    seen: ClassVar[list[int]] = []

    def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
        """Note this thread's nice value, then encode."""
        self.seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return super().encode(pixels, params)


@pytest.fixture(name="probe")
def _probe() -> Iterator[type[PriorityProbe]]:
    codecs.register(PriorityProbe())
    PriorityProbe.seen = []
    yield PriorityProbe
    del codecs._REGISTRY[PriorityProbe.name]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
@pytest.mark.parametrize("nice", [0, 3, 7])
def test_worker_nice_lowers_the_encoders_priority(
    run_dir: Path, rgb: np.ndarray[Any, Any], probe: type[PriorityProbe], nice: int
) -> None:
    """worker_nice=N: encoder threads run N nice levels below the caller (capped at 19)."""
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with imagelog.open(run_dir, format=probe.name, worker_nice=nice, workers=2) as log:
        for _ in range(4):
            log.log(rgb[:16, :16])
    assert len(probe.seen) == 4
    assert set(probe.seen) == {min(19, caller + nice)}


def test_max_queue_bytes_from_the_environment(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IMAGELOG_MAX_QUEUE_BYTES sets the bound; an explicit argument wins; a bad value is an
    error at open() that names the variable."""
    monkeypatch.setenv("IMAGELOG_MAX_QUEUE_BYTES", "3 MiB")
    with imagelog.open(run_dir) as log:
        assert log.settings.max_queue_bytes == 3 * 2**20
    with imagelog.open(run_dir, max_queue_bytes="1 MiB") as log:
        assert log.settings.max_queue_bytes == 2**20
    monkeypatch.setenv("IMAGELOG_MAX_QUEUE_BYTES", "plenty")
    with pytest.raises(ValueError, match="IMAGELOG_MAX_QUEUE_BYTES"):
        imagelog.open(run_dir)


def test_queue_bound_from_the_environment_drops(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame larger than what the environment's bound leaves is dropped under drop_newest."""
    monkeypatch.setenv("IMAGELOG_MAX_QUEUE_BYTES", "4096")
    gate = threading.Event()

    class Gated(PNG):
        name = "gated-env"

        def encode(self, pixels: Pixels, params: Mapping[str, Any]) -> bytes:
            gate.wait(PATIENCE)
            return super().encode(pixels, params)

    codecs.register(Gated())
    try:
        log = imagelog.open(run_dir, format="gated-env", on_full="drop_newest", workers=1)
        for i in range(8):
            log.log(np.full((32, 32), i, np.uint8))  # 1 KiB each: 4 fit
        assert log.stats()["dropped_by_reason"].get("queue_full", 0) >= 3
        gate.set()
        log.close()
    finally:
        gate.set()
        del codecs._REGISTRY["gated-env"]


class TestHandler:
    def test_formatter_makes_the_message(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """A formatter set on the Handler gives the record's message."""
        log = imagelog.open(run_dir)
        lg = logging.getLogger("test.formatter")
        handler = imagelog.Handler(log)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        lg.addHandler(handler)
        try:
            lg.warning("defect %d", 3, extra={"image": rgb[:8, :8]})
        finally:
            lg.removeHandler(handler)
            log.close()
        (rec,) = imagelog.read(run_dir).records()
        assert rec["message"] == "WARNING test.formatter: defect 3"
        assert rec["log"]["level"] == "warning"

    def test_errors_go_to_handle_error_never_to_the_program(
        self,
        run_dir: Path,
        rgb: np.ndarray[Any, Any],
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A bad image or a closed log makes logging report the error (handleError), and the
        call that logged returns normally; good records around it are written."""
        monkeypatch.setattr(logging, "raiseExceptions", True)  # print the error (the default)
        log = imagelog.open(run_dir)
        lg = logging.getLogger("test.errors")
        lg.propagate = False
        handler = imagelog.Handler(log)
        lg.addHandler(handler)
        try:
            lg.warning("good", extra={"image": rgb[:8, :8]})
            lg.warning("bad", extra={"image": np.zeros((4, 4, 7), np.uint8)})
            log.close()
            lg.warning("after close", extra={"image": rgb[:8, :8]})
        finally:
            lg.removeHandler(handler)
            lg.propagate = True
        err = capsys.readouterr().err
        assert err.count("--- Logging error ---") == 2
        assert "7 channels" in err
        assert "closed ImageLog" in err
        assert [r["message"] for r in imagelog.read(run_dir).records()] == ["good"]


EXIT_CHILD = textwrap.dedent(
    """
    import sys, threading, numpy as np, imagelog
    from imagelog import codecs
    from imagelog.codecs.png import PNG

    class Stuck(PNG):
        name = "stuck"
        def encode(self, pixels, params):
            threading.Event().wait()  # never returns
            return b""

    codecs.register(Stuck())
    log = imagelog.open(sys.argv[1], format="stuck", workers=1, close_timeout=0.5)
    for i in range(4):
        log.log(np.full((8, 8), i, np.uint8), i=i)
    print("logged", flush=True)
    # the script ends without close(): the atexit hook drains, with close_timeout
    """
)


def test_exit_hook_with_a_stuck_encoder(run_dir: Path) -> None:
    """A program that exits with its encoder stuck still exits: the atexit hook waits
    close_timeout, then records the frames left behind as dropped (close_timeout)."""
    done = subprocess.run([sys.executable, "-c", EXIT_CHILD, str(run_dir)], capture_output=True,
                          text=True, timeout=PATIENCE, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "logged"
    lines = [json.loads(x) for seg in (run_dir / "index").glob("*.jsonl")
             for x in seg.read_text("utf-8").splitlines()]  # fmt: skip
    drops = [r for r in lines if r["event"]["action"] == "dropped"]
    assert {r["event"]["reason"] for r in drops} == {"close_timeout"}
    assert sorted(r["meta"]["i"] for r in drops) == [1, 2, 3]  # frame 0 is in the stuck encoder
    assert "3 frame(s) not written" in done.stderr  # reported, not silent

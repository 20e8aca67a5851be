"""imagelog tail -f: records of many writers across segment rotation, Ctrl-C exits cleanly."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import imagelog
from imagelog.logger import ImageLog
from imagelog.samples import CameraSimulator
from imagelog.settings import Settings
from imagelog.stores import make_store

HOUR = 3600 * 10**9
OTHER_WRITER = """
import sys, imagelog
from imagelog.samples import CameraSimulator
cam = CameraSimulator(32, 24, seed=9)
with imagelog.open(sys.argv[1], format="png") as log:
    for i in range(2):
        log.log(cam.frame(), source="other", i=i)
"""


def test_tail_follows_writers_and_rotation_then_exits_on_sigint(tmp_path: Path) -> None:
    """A real `imagelog tail -f` sees two writers' new records, an hour rollover in between,
    skips what --where excludes, and exits 0 without a traceback on SIGINT."""
    run = tmp_path / "run"
    cam = CameraSimulator(32, 24, seed=4)
    clock_ns = [1_704_067_200 * 10**9 + HOUR - 5 * 10**9]  # 5 s before an hour ends
    log = ImageLog(make_store(run), Settings.from_kwargs(format="png"), clock=lambda: clock_ns[0])
    log.log(cam.frame(), source="before")  # already there: not printed with -n 0
    assert log.flush()
    cmd = [sys.executable, "-m", "imagelog", "tail", str(run), "-f", "-n", "0", "--json",
           "--where", "source <> 'skip'", "--poll", "0.05"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or ()], daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        got: list[dict[str, object]] = []
        log.log(cam.frame(), source="cam", i=0)
        log.log(cam.frame(), source="skip")
        assert log.flush()
        # the tail lists the segments when it starts: wait until it printed the first record
        # before the hour rolls over, so the rotation happens while it follows
        while not got:
            assert time.monotonic() < deadline and proc.poll() is None, "tail printed nothing"
            try:
                got.append(json.loads(lines.get(timeout=0.5)))
            except queue.Empty:
                log.log(cam.frame(), source="cam", i=0)  # it started after the first one
                assert log.flush()
        clock_ns[0] += 10 * 10**9  # the next hour: a new segment
        log.log(cam.frame(), source="cam", i=1)
        assert log.flush()
        subprocess.run([sys.executable, "-c", OTHER_WRITER, str(run)], check=True)
        want = {("cam", 1), ("other", 0), ("other", 1)}
        while not want <= {(r["image"]["source"], r["meta"]["i"]) for r in got}:  # type: ignore[index]
            assert time.monotonic() < deadline, f"tail missed records: {got}"
            try:
                got.append(json.loads(lines.get(timeout=0.5)))
            except queue.Empty:
                continue
        assert len({Path(p).name[:13] for p in (run / "index").glob("*.jsonl")}) >= 2
        assert all(r["image"]["source"] not in ("skip", "before") for r in got)  # type: ignore[index]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        log.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=30)
        err = proc.stderr.read() if proc.stderr else ""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert "Traceback" not in err
    assert imagelog.read(run).query("select count(*) from records").fetchall()[0][0] >= 6

"""kill -9 in the middle of a burst leaves an index whose every line opens a whole image."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import imagelog

from .conftest import wait_for

CHILD = """
import sys, imagelog
from imagelog.samples import CameraSimulator
cam = CameraSimulator(320, 240, seed=5)
frames = [cam.frame() for _ in range(4)]
log = imagelog.open(sys.argv[1], format=sys.argv[2])
i = 0
while True:
    log.log(frames[i % 4], source="cam", i=i)
    i += 1
    print(i, flush=True)  # frames log() has accepted so far
"""


def _index_lines(run_dir: Path) -> int:
    return sum(seg.read_bytes().count(b"\n") for seg in (run_dir / "index").glob("*.jsonl"))


def _burst_and_kill(run_dir: Path, fmt: str, after_lines: int) -> tuple[int, int]:
    """Kill a logging child once ``after_lines`` more index lines exist; return (lines written
    before the kill at least, frames the child had logged at least)."""
    before = _index_lines(run_dir) if (run_dir / "index").exists() else 0
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir), fmt], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    logged = [0]

    def read() -> None:  # keep the pipe drained so the child never waits on it
        assert proc.stdout is not None
        for line in proc.stdout:
            logged[0] = int(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: (run_dir / "index").exists() and _index_lines(run_dir) >= before + after_lines,
                 f"{after_lines} index lines from the child")  # fmt: skip
        seen = _index_lines(run_dir) - before
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        reader.join(60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return seen, logged[0]


def test_every_index_line_points_at_a_whole_image(run_dir: Path) -> None:
    """SIGKILL while frames are still being written (fewer lines than frames logged): every
    index line's file exists, matches its hash and decodes; only a segment's last line is torn."""
    kills = []
    for fmt, after in [("png", 5), ("lossless", 20), ("preview", 40)]:
        total_before = _index_lines(run_dir) if (run_dir / "index").exists() else 0
        seen, logged = _burst_and_kill(run_dir, fmt, after)
        written = _index_lines(run_dir) - total_before  # whole lines this child left
        kills.append((fmt, seen, written, logged))
        assert seen >= after
        assert written < logged, kills  # the kill landed with frames accepted but not yet written
    run = imagelog.read(run_dir)
    lines = 0
    for seg in sorted((run_dir / "index").glob("*.jsonl")):
        raw = seg.read_bytes().split(b"\n")
        for k, line in enumerate(raw):
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                assert k == len(raw) - 1, "only a segment's last line may be torn"
                continue
            lines += 1
            data = (run_dir / rec["file"]["path"]).read_bytes()
            assert len(data) == rec["file"]["size"]
            assert hashlib.sha256(data).hexdigest() == rec["file"]["hash"]["sha256"]
            assert run.load(rec).shape == (240, 320, 3)
    assert lines >= sum(seen for _, seen, _, _ in kills)
    recs = list(run.records())
    assert len(recs) == lines
    indexed = {r["file"]["path"] for r in recs}
    assert not any(".tmp-" in p for p in indexed)  # temp files may remain; they are never indexed

"""kill -9 in the middle of a burst leaves an index whose every line opens a whole image."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imagelog

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
    if i == 50:
        print("ready", flush=True)
"""


def _burst_and_kill(run_dir: Path, fmt: str, delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_dir), fmt], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()


def test_every_index_line_points_at_a_whole_image(run_dir: Path) -> None:
    """After SIGKILL at several moments, every index line's file exists, matches its hash, decodes."""
    import hashlib

    for delay, fmt in [(0.05, "png"), (0.3, "lossless"), (0.6, "preview")]:
        _burst_and_kill(run_dir, fmt, delay)
    lines = 0
    run = imagelog.read(run_dir)
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
    assert lines > 0
    recs = list(run.records())
    assert len(recs) == lines
    indexed = {r["file"]["path"] for r in recs}
    assert not any(".tmp-" in p for p in indexed)  # temp files may remain; they are never indexed

"""Many threads and many processes into one run: exact counts, no collisions, files that open."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog.samples import CameraSimulator


def test_8_threads_x_200_frames(run_dir: Path) -> None:
    """8 threads x 200 frames give exactly 1,600 records, in order per thread, every file decodes."""
    frames = [CameraSimulator(64, 48, seed=s).frame() for s in range(8)]
    barrier = threading.Barrier(8)
    with imagelog.open(run_dir, format="png") as log:

        def worker(t: int) -> None:
            barrier.wait()
            for i in range(200):
                log.log(frames[t], source=f"t{t}", i=i)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    run = imagelog.read(run_dir)
    recs = list(run.records())
    assert len(recs) == 1600
    assert len({r["image"]["id"] for r in recs}) == 1600
    assert len({r["file"]["path"] for r in recs}) == 1600
    for t in range(8):
        seq = [r["meta"]["i"] for r in recs if r["image"]["source"] == f"t{t}"]
        assert seq == list(range(200))
    for rec in recs[::40]:
        t = int(rec["image"]["source"][1:])
        assert np.array_equal(run.load(rec), frames[t])


CHILD = """
import sys, imagelog
from imagelog.samples import CameraSimulator
cam = CameraSimulator(32, 24, seed=3)
with imagelog.open(sys.argv[1], format="png") as log:
    for i in range(int(sys.argv[3])):
        log.log(cam.frame(), source=sys.argv[2], i=i)
"""


def _child(path: str, tag: str, n: int) -> None:
    cam = CameraSimulator(32, 24, seed=3)
    with imagelog.open(path, format="png") as log:
        for i in range(n):
            log.log(cam.frame(), source=tag, i=i)


@pytest.mark.parametrize("method", ["fork", "subprocess"])
def test_two_processes_into_one_run(run_dir: Path, method: str) -> None:
    """Two processes (forked, or separate programs) log into one run: all records, two writers."""
    if method == "fork":
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_child, args=(str(run_dir), f"p{k}", 150)) for k in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
    else:
        progs = [
            subprocess.Popen([sys.executable, "-c", CHILD, str(run_dir), f"p{k}", "150"])
            for k in range(2)
        ]
        for prog in progs:
            assert prog.wait(120) == 0
    run = imagelog.read(run_dir)
    recs = list(run.records())
    assert len(recs) == 300
    assert len({r["file"]["path"] for r in recs}) == 300
    assert len({r["imagelog"]["writer"] for r in recs}) == 2
    for k in range(2):
        assert [r["meta"]["i"] for r in recs if r["image"]["source"] == f"p{k}"] == list(range(150))
    assert all(run.path(r).exists() for r in recs)


def test_forked_child_gets_a_fresh_writer(run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
    """A child forked from a process with an open log writes under its own writer id."""
    log = imagelog.open(run_dir, format="png")
    log.log(rgb, source="parent")
    parent_writer = log.writer
    pid = os.fork()
    if pid == 0:  # the child: log, close, and leave without running the parent's atexit hooks
        code = 0
        try:
            log.log(rgb, source="child")
            log.close()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log.log(rgb, source="parent")
    log.close()
    recs = list(imagelog.read(run_dir).records())
    writers = {r["image"]["source"]: r["imagelog"]["writer"] for r in recs}
    assert sorted(r["image"]["source"] for r in recs) == ["child", "parent", "parent"]
    assert writers["parent"] == parent_writer
    assert writers["child"] != parent_writer


def test_exit_drains_without_close(run_dir: Path) -> None:
    """A script that logs and exits without close() still writes every frame (the atexit drain)."""
    code = (
        "import sys, imagelog\n"
        "from imagelog.samples import CameraSimulator\n"
        "cam = CameraSimulator(320, 240)\n"
        "log = imagelog.open(sys.argv[1])\n"
        "for i in range(60):\n"
        "    log.log(cam.frame(), i=i)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(run_dir)], check=True, timeout=120)
    recs = list(imagelog.read(run_dir).records())
    assert [r["meta"]["i"] for r in recs] == list(range(60))

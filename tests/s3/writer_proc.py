"""A logging process for the s3 tests: ``python writer_proc.py URL OPTIONS_JSON MODE N [M]``.

Modes:
    plain: log N frames from a CameraSimulator, close, print the stats as JSON.
    crash: log N frames, flush, print "flushed", wait for a line on stdin (the test stops the
        server), log M frames, flush, log M more without flushing, wait until they are written,
        print "ready" and sleep until killed.
"""

from __future__ import annotations

import json
import os
import sys
import time

import imagelog
from imagelog.samples import CameraSimulator


def main() -> None:
    """Run one mode."""
    url, options, mode, n = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    cam = CameraSimulator(160, 120, seed=os.getpid() % 1000)
    log = imagelog.open(url, storage_options=options, format="png")
    for i in range(n):
        log.log(cam.frame(), source=f"cam{os.getpid() % 3}", i=i, pid=os.getpid())
    if mode == "plain":
        log.close()
        print(json.dumps(log.stats()), flush=True)
        return
    m = int(sys.argv[5])
    log.flush()
    print("flushed", flush=True)
    sys.stdin.readline()
    for i in range(n, n + m):
        log.log(cam.frame(), source="cam", i=i, pid=os.getpid())
    log.flush()
    for i in range(n + m, n + 2 * m):
        log.log(cam.frame(), source="cam", i=i, pid=os.getpid())
    while log.stats()["written"] < n + 2 * m:
        time.sleep(0.01)
    print("ready", json.dumps(log.stats()["store"]), flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()

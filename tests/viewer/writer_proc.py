"""A live writer for the viewer tests: ``python writer_proc.py RUN PERIOD_S STOP_FILE``.

Logs one 160x120 frame every PERIOD_S seconds (flushed, so its index line is written) and prints
its id, until STOP_FILE exists; then closes. With STOP_FILE ``-`` it never stops (to be killed).
"""

from __future__ import annotations

import os
import sys
import time

import imagelog
from imagelog.samples import CameraSimulator


def main() -> None:
    """Log until told to stop."""
    run, period, stop = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    cam = CameraSimulator(160, 120, seed=11)
    log = imagelog.open(run, format="jpeg")
    i = 0
    while stop == "-" or not os.path.exists(stop):
        log.log(cam.frame(), source="live", i=i)
        log.flush()
        print(f"logged {i}", flush=True)
        i += 1
        time.sleep(period)
    log.close()


if __name__ == "__main__":
    main()

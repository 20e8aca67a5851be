"""A writer for the budget tests: ``python select_proc.py URL OPTIONS_JSON POLICY N T0_NS``.

Logs ``N`` frames of a static scene (one source, ``cam``) under ``select=POLICY`` with a log
clock that starts at ``T0_NS`` (so every process's frames fall in one budget window, whenever
the test runs), closes, and prints its ``stats()`` as JSON.
"""

from __future__ import annotations

import itertools
import json
import sys

from imagelog import ImageLog
from imagelog.samples import CameraSimulator
from imagelog.settings import Settings
from imagelog.stores import make_store


def main() -> None:
    """Log, close, print the stats."""
    url, options, policy = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    n, t0 = int(sys.argv[4]), int(sys.argv[5])
    ticks = itertools.count()
    settings = Settings.from_kwargs(select=policy, storage_options=options, format="png")
    store = make_store(url, create=True, storage_options=options)
    log = ImageLog(store, settings, clock=lambda: t0 + next(ticks) * 1_000_000)
    cam = CameraSimulator(64, 48, seed=1)
    for i in range(n):
        log.log(cam.frame(), source="cam", i=i)
    log.close()
    print(json.dumps(log.stats()), flush=True)


if __name__ == "__main__":
    main()

"""The README's example run: two cameras of a production line over three hours (240 frames).

``python -m bench.line3 [RUN]`` (default ``runs/line3``) writes it with a clock that starts at
2025-11-25T04:00:00Z and moves 45 s a frame: ``cam1`` (640x480, ``lossless``: JPEG XL) logs two
frames in three, ``cam2`` (``preview``: JPEG) the third; every 17th frame is a defect, and every
frame has a ``score``. The README's ``query``, ``compact``, ``ls``, ``export`` and ``tail``
outputs are this run's (ids, writer ids and timings differ from one run to the next).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from imagelog.logger import ImageLog
from imagelog.samples import CameraSimulator
from imagelog.settings import Settings
from imagelog.stores import make_store

START_NS = 1_764_043_200 * 10**9  # 2025-11-25T04:00:00Z
STEP_NS = 45 * 10**9
FRAMES = 240


def make(path: Path) -> None:
    """Write the run at ``path`` (replacing what is there)."""
    shutil.rmtree(path, ignore_errors=True)
    now = [START_NS]
    cam = CameraSimulator(640, 480, seed=3)
    settings = Settings.from_kwargs(format="lossless", formats={"cam2": "preview"})
    with ImageLog(make_store(path), settings, clock=lambda: now[0]) as log:
        for i in range(FRAMES):
            now[0] = START_NS + i * STEP_NS
            meta = {"score": round(0.5 + ((i * 37) % 50) / 100, 2)}
            if i % 17 == 0:
                meta["defect"] = True
            log.log(cam.frame(), source="cam2" if i % 3 == 0 else "cam1", **meta)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.line3 [RUN]``."""
    p = argparse.ArgumentParser(prog="python -m bench.line3", description=__doc__)
    p.add_argument("run", nargs="?", default="runs/line3", help="where (runs/line3)")
    a = p.parse_args(argv)
    make(Path(a.run))
    print(f"wrote {a.run}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

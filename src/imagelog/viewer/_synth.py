"""Large runs for the viewer's tests and benchmark: a few real images, many index lines.

``make_run(root, records=100_000)`` logs a handful of real frames (RGB JPEG XL, a 16-bit depth
frame, a float32 TIFF, a camera JPEG passed through, a raw .npy) with ``imagelog.open``, then writes
``records`` more index lines that point at those files, spread over sources and hours, with
``meta`` and ``labels`` to filter on, and a few drop events.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..layout import hour_of, segment_key

__all__ = ["SOURCES", "make_run"]

SOURCES = ("cam1", "cam2", "depth", "thermal")
_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


def _real_frames(root: Path, data_dir: Path | None) -> dict[str, list[dict[str, Any]]]:
    """Log a few real frames per source; returns their records by source."""
    import imagelog
    from imagelog.samples import CameraSimulator, depth_frame

    from ..index import parse_segment, segment_keys

    data = data_dir if data_dir is not None else _DATA
    photos = sorted(data.glob("*.png"))[:4] + sorted(data.glob("*.jpg"))[:2]
    cam = CameraSimulator(320, 240, seed=3)
    with imagelog.open(root, formats={"thermal": "tiff", "cam2": "preview"}) as log:
        for i, photo in enumerate(photos):
            raw = photo.read_bytes()
            if photo.suffix == ".jpg":  # a camera JPEG, stored as it came
                log.log(raw, source="cam2", shot=i)
            else:
                from PIL import Image

                with Image.open(photo) as im:
                    rgb = np.asarray(im.convert("RGB"))
                log.log(rgb, source="cam1", shot=i)
        for i in range(3):
            log.log(cam.frame(), source="cam2", shot=10 + i)
            log.log(depth_frame(320, 240) + np.uint16(i * 500), source="depth", shot=i)
            yy, xx = np.mgrid[0:120, 0:160].astype(np.float32)
            log.log(np.sin(xx / (9 + i)) * np.cos(yy / 7) * 40.0 + 20.0, source="thermal", shot=i)
        log.log(cam.frame()[:, :, 0], source="depth", format="npy", shot=99)
    by_source: dict[str, list[dict[str, Any]]] = {}
    store = imagelog.read(root).store
    for key in segment_keys(store):
        for rec in parse_segment(store.get(key), key=key):
            if (rec.get("event") or {}).get("action") == "logged":
                by_source.setdefault(rec["image"]["source"], []).append(rec)
    return by_source


def make_run(
    root: str | os.PathLike[str],
    *,
    records: int = 100_000,
    fps: float = 30.0,
    start: dt.datetime | None = None,
    data_dir: Path | None = None,
    drops_every: int = 9973,
) -> Path:
    """A run at ``root`` with ``records`` synthetic index lines over a few real image files.

    Frames go round-robin to :data:`SOURCES` at ``fps`` in all, from ``start`` (default: so that
    they end where the real frames begin); each has ``meta`` ``{"frame_no": i, "score": ..., "shift": ...}`` and
    ``labels`` ``{"line": "1".."3"}``; every ``drops_every``-th line is a ``queue_full`` drop.
    """
    root = Path(root)
    real = _real_frames(root, data_dir)
    if start is None:  # the synthetic frames lead up to the real ones, as one session
        first = min(r["@timestamp"] for rs in real.values() for r in rs)
        start = dt.datetime.fromisoformat(first) - dt.timedelta(seconds=records / fps)
    t0 = start
    writer = "5f1e7a00-1"
    files: dict[str, Any] = {}
    try:
        for i in range(records):
            source = SOURCES[i % len(SOURCES)]
            pool = real[source]
            rec = copy.copy(pool[i % len(pool)])
            t = t0 + dt.timedelta(seconds=i / fps)
            stamp = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            image = dict(rec["image"])
            image["id"] = f"{int(t.timestamp() * 1000):012x}-0000-7000-8000-{i:012d}"
            image["seq"] = i
            rec["image"] = image
            rec["@timestamp"] = stamp
            rec["event"] = {**rec["event"], "created": stamp}
            rec["meta"] = {"frame_no": i, "score": round((i * 7919 % 1000) / 1000, 3),
                           "shift": ("day", "night")[(i // 5000) % 2]}  # fmt: skip
            rec["labels"] = {"line": str(1 + i % 3)}
            rec["imagelog"] = {**rec["imagelog"], "writer": writer}
            if drops_every and i % drops_every == drops_every - 1:
                rec["event"] = {**rec["event"], "action": "dropped", "reason": "queue_full",
                                "outcome": "failure"}  # fmt: skip
                rec.pop("file", None)
            hour = hour_of(int(t.timestamp()) * 10**9 + t.microsecond * 1000)
            fh = files.get(hour)
            if fh is None:
                fh = files[hour] = open(  # noqa: SIM115 (closed in finally)
                    root / segment_key(hour, writer), "a", encoding="utf-8"
                )
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
    finally:
        for fh in files.values():
            fh.close()
    return root

"""The public API as users write it; checked by mypy (make typecheck), never run by pytest."""

from __future__ import annotations

import logging

import numpy as np

import imagelog


def example(path: str) -> int:
    """Log, read back and count, with every public name typed."""
    frame = np.zeros((480, 640, 3), np.uint8)
    with imagelog.open(path, format="lossless", on_full=imagelog.OnFull.DROP_OLDEST) as log:
        rid: str = log.log(frame, source="cam1", message="hello", labels={"line": "3"}, score=0.5)
        ok: bool = log.flush(timeout=5.0)
        stats: dict[str, object] = log.stats()
    logging.getLogger("x").addHandler(imagelog.Handler(log))
    run: imagelog.Run = imagelog.read(path)
    n = 0
    for rec in run.records(source="cam1"):
        pixels = run.load(rec)
        n += int(pixels.size > 0)
    return n + len(rid) + int(ok) + len(stats)


def camera(path: str, buf: bytes) -> int:
    """Camera pixel formats (#16): a padded Bayer buffer in, RGB out."""
    from imagelog import pixfmt

    with imagelog.open(path, check_encoding="sample") as log:
        log.log(buf, size=(1920, 1080), pixel_format="bayer_rggb8", stride=2048)
    run = imagelog.read(path)
    total = 0
    for rec in run.records():
        mosaic: np.ndarray[tuple[int, ...], np.dtype[np.generic]] = run.load(rec)
        rgb = run.load(rec, convert="rgb")
        total += int(pixfmt.to_rgb(mosaic, "bayer_rggb8").size == rgb.size)
    return total


def metadata_and_triggers(path: str) -> str:
    """meta={...} for names that are log()'s parameters (#19); trigger's reason by keyword."""
    frame = np.zeros((48, 64), np.uint8)
    with imagelog.open(path, ring="30s") as log:
        log.log(frame, meta={"mode": "train", "size": 5}, epoch=3, level="warning")
        tid: str = log.trigger(reason="defect", before="2s")
    try:
        imagelog.read(path)
    except imagelog.UnsupportedRun as exc:
        return str(exc)
    return tid

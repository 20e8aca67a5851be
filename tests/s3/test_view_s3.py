"""``imagelog view s3://...`` against a real S3 server (SeaweedFS): frames, files, live growth."""

from __future__ import annotations

import io
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import imagelog
from imagelog.viewer import Viewer

pytestmark = pytest.mark.s3


def _get(v: Viewer, path: str) -> bytes:
    with urllib.request.urlopen(v.api_url(path), timeout=60) as resp:
        data: bytes = resp.read()
        return data


def test_view_an_s3_run(s3_url: str, opts: dict[str, Any], tmp_path: Path) -> None:
    """Counts, thumbnails (16-bit JPEG XL too) and originals of an s3:// run; new frames appear."""
    yy, xx = np.mgrid[0:48, 0:64]
    log = imagelog.open(s3_url, storage_options=opts)
    for i in range(4):
        log.log((xx * 4 + i).astype(np.uint8), source="gray", format="png", i=i)
    log.log((xx * 900).astype(np.uint16), source="depth")
    log.flush()
    run = imagelog.read(s3_url, storage_options=opts)
    try:
        with Viewer(run, cache_dir=tmp_path / "cache") as v:
            deadline = time.monotonic() + 60
            while json.loads(_get(v, "/api/count"))["count"] < 5:
                assert time.monotonic() < deadline, "the s3 run's frames never showed"
                time.sleep(0.1)
            frames = json.loads(_get(v, "/api/frames"))["frames"]
            for f in frames:
                with Image.open(io.BytesIO(_get(v, f"/thumb/{f['id']}"))) as im:
                    assert im.format == "JPEG" and im.size == (64, 48)
            rec = json.loads(_get(v, f"/api/record/{frames[0]['id']}"))
            path = rec["record"]["file"]["path"]
            assert _get(v, f"/run/{path}") == run.store.get(path)
            for i in range(3):  # a live run: new index parts are read, old ones not again
                log.log((yy * 5 + i).astype(np.uint8), source="gray", format="png", i=10 + i)
            log.flush()
            while json.loads(_get(v, "/api/count"))["count"] < 8:
                assert time.monotonic() < deadline + 60, "new frames never showed"
                time.sleep(0.1)
    finally:
        log.close()

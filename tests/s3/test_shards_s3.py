"""Shards on S3 (SeaweedFS): a shard goes up whole, in one PUT, when it closes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tests.conftest import wait_for

import imagelog
from imagelog.audit import verify
from imagelog.samples import CameraSimulator

pytestmark = pytest.mark.s3


def test_tiny_frames_take_a_put_per_shard(
    s3_url: str, opts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 tiny frames: a handful of image PUTs (one per shard) instead of 300; every record
    loads with one ranged GET; verify finds nothing wrong."""
    from imagelog.stores.s3 import S3Store

    puts: list[str] = []
    real_put = S3Store.put

    def counted(self: S3Store, key: str, data: bytes, *, sync: bool = False) -> None:
        puts.append(key)
        real_put(self, key, data, sync=sync)

    monkeypatch.setattr(S3Store, "put", counted)
    cam = CameraSimulator(32, 24, seed=2)
    frames = [cam.frame() for _ in range(300)]
    with imagelog.open(s3_url, storage_options=opts, format="png", shard_under="64KiB",
                       shard_bytes="96KiB") as log:  # fmt: skip
        for i, frame in enumerate(frames):
            log.log(frame, i=i)
        assert log.flush()
        visible = len(list(imagelog.read(s3_url, storage_options=opts).records()))
        wait_for(lambda: log.stats()["store"]["pending"] == 0, "the spool to empty")
    run = imagelog.read(s3_url, storage_options=opts)
    images = [o.key for o in run.store.list("images/")]
    assert visible == 300
    assert 2 <= len(images) <= 20 and all(k.endswith(".tar") for k in images)
    assert sorted(k for k in puts if k.startswith("images/")) == sorted(images)
    recs = list(run.records())
    assert [r["meta"]["i"] for r in recs] == list(range(300))
    for r in recs[::37]:
        assert np.array_equal(run.load(r), frames[r["meta"]["i"]])
    assert not verify(run, sample=0.1).damaged

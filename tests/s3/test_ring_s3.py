"""The ring on s3://: saved windows go up through the spool like any record; triggers left in
the bucket by ``imagelog trigger`` reach the writer."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog._cli_ring import write_trigger
from imagelog.samples import CameraSimulator

pytestmark = pytest.mark.s3

T0 = 1_764_000_000 * 10**9


def test_ring_window_to_s3_and_a_trigger_left_in_the_bucket(
    s3_url: str, opts: dict[str, Any]
) -> None:
    """Two windows (one from trigger(), one from a trigger object in the bucket) come back
    pixel-exact; everything else is summed up as expired."""
    cam = CameraSimulator(160, 120, seed=2)
    frames = [cam.frame() for _ in range(60)]
    with imagelog.open(s3_url, ring="1h", storage_options=opts) as log:
        for i, frame in enumerate(frames):
            log.log(frame, source="cam", captured_at=T0 + i * 10**9 // 60, i=i)
        tid = log.trigger("defect", before="0.1s", at=T0 + 10 * 10**9 // 60)  # frames 4..10
        other = write_trigger(
            s3_url, "operator", before=0.05, at_ns=T0 + 50 * 10**9 // 60, storage_options=opts
        )  # frames 47..50
        deadline = time.monotonic() + 60
        while log.stats()["triggers"] < 2:  # the maintenance thread lists triggers/ each second
            assert time.monotonic() < deadline, "the trigger object was not picked up"
            time.sleep(0.05)
        assert log.flush()
    run = imagelog.read(s3_url, storage_options=opts)
    recs = list(run.records())
    by_trigger = {r["meta"]["i"]: r["labels"]["trigger"] for r in recs}
    assert by_trigger == {**dict.fromkeys(range(4, 11), tid), **dict.fromkeys(range(47, 51), other)}
    for rec in recs:
        assert np.array_equal(run.load(rec), frames[rec["meta"]["i"]])
    s = log.stats()
    assert s["expired"] == 60 - len(recs) and s["logged"] == s["written"] + s["expired"]
    expired = [r for r in run.records(include_events=True) if r["event"]["action"] == "expired"]
    assert sum(r["imagelog"]["expired"]["frames"] for r in expired) == s["expired"]

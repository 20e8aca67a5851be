"""Queries and compaction of an s3:// run against a real server (SeaweedFS)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import imagelog
from imagelog.compact import compact
from imagelog.samples import CameraSimulator

pytestmark = pytest.mark.s3


def test_query_and_compaction_on_s3(s3_url: str, opts: dict[str, Any]) -> None:
    """An s3:// run answers SQL; two compactors racing on it leave each record exactly once."""
    cam = CameraSimulator(64, 48, seed=2)
    with imagelog.open(s3_url, storage_options=opts, format="png") as log:
        for i in range(10):
            log.log(cam.frame(), source=f"cam{i % 2}", step=i, **({"odd": True} if i % 2 else {}))
    run = imagelog.read(s3_url, storage_options=opts)
    before = list(run.records())
    assert len(before) == 10
    assert run.query("select count(*) from records where meta->>'$.odd' = 'true'").fetchall() == [
        (5,)
    ]
    parts = [o.key for o in run.store.list("index/") if o.key.endswith(".jsonl")]
    assert parts
    errors: list[BaseException] = []

    def compactor() -> None:
        try:
            compact(imagelog.read(s3_url, storage_options=opts).store, now_ns=2**62)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=compactor) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    keys = [o.key for o in run.store.list("index/")]
    assert [k for k in keys if k.endswith(".jsonl")] == []
    assert len([k for k in keys if k.endswith(".parquet")]) == 1
    again = imagelog.read(s3_url, storage_options=opts)
    assert list(again.records()) == before
    assert again.query("select count(*), count(distinct id) from records").fetchall() == [(10, 10)]
    assert again.load(before[3]).shape == (48, 64, 3)

"""The spool and the index parts without a server: an in-memory store that can be switched off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

import imagelog
from imagelog.index import parse_segment, segment_keys, writer_of
from imagelog.logger import ImageLog
from imagelog.settings import Settings
from imagelog.stores import MemoryStore
from imagelog.stores.spool import SpoolStore

from .conftest import PATIENCE


class FlakyStore(MemoryStore):
    """A memory store whose puts fail while ``down``; it records the order of successful puts."""

    def __init__(self) -> None:
        super().__init__("flaky")
        self.down = False
        self.order: list[str] = []

    def put(self, key: str, data: bytes, *, sync: bool = False) -> None:
        """Fail like an unreachable server while down."""
        if self.down:
            raise imagelog.StoreError("connection refused (test)")
        super().put(key, data, sync=sync)
        self.order.append(key)

    def exists(self, key: str) -> bool:
        """Fail while down."""
        if self.down:
            raise imagelog.StoreError("connection refused (test)")
        return super().exists(key)


def test_index_parts_are_immutable_and_hold_every_line_once(tmp_path: Path) -> None:
    """Lines become numbered parts (on flush, at max_lines, at close); no line is in two parts."""
    inner = MemoryStore("parts")
    spool = SpoolStore(inner, spool_dir=tmp_path, index_interval=3600, index_max_lines=4)
    seg = spool.open_segment("index/2026-11-24T19_ab12cd34-77.jsonl")
    for i in range(6):  # 4 lines fill part 0; 2 wait
        seg.append(json.dumps({"i": i}).encode() + b"\n")
    seg.flush()
    seg.append(b'{"i": 6}\n')
    seg.close()
    spool.close()
    keys = segment_keys(inner)
    assert keys == [f"index/2026-11-24T19_ab12cd34-77.00000{n}.jsonl" for n in range(3)]
    lines = [r["i"] for k in keys for r in parse_segment(inner.get(k))]
    assert lines == list(range(7))
    assert {writer_of(k) for k in keys} == {"ab12cd34-77"}
    assert not any(tmp_path.iterdir())


def test_outage_spools_in_order_and_uploads_images_before_their_index(
    tmp_path: Path, rgb: np.ndarray[Any, Any]
) -> None:
    """While the store is down frames are spooled; afterwards every image precedes its index part."""
    inner = FlakyStore()
    spool = SpoolStore(inner, spool_dir=tmp_path / "spool", index_interval=0.2,
                       initial_backoff=0.05, max_backoff=0.2)  # fmt: skip
    log = ImageLog(spool, Settings(format="png", workers=4))
    try:
        for i in range(3):
            log.log(rgb[:40, :40], i=i)
        assert log.flush()
        inner.down = True
        for i in range(3, 15):
            log.log(rgb[:40, :40], i=i)
        assert log.flush()
        assert log.stats()["store"]["pending"] >= 12
        inner.down = False
    finally:
        log.close()
    assert log.stats()["store"]["pending"] == 0
    run = imagelog.Run(inner)
    recs = list(run.records())
    assert sorted(r["meta"]["i"] for r in recs) == list(range(15))
    for key in segment_keys(inner):
        at = inner.order.index(key)
        for rec in parse_segment(inner.get(key)):
            assert inner.order.index(rec["file"]["path"]) < at
    assert not any((tmp_path / "spool").iterdir())


def test_a_new_process_adopts_a_spool_left_behind(
    tmp_path: Path, rgb: np.ndarray[Any, Any]
) -> None:
    """A spool folder whose owner is gone (lock free) is uploaded by the next store that opens it."""
    inner = FlakyStore()
    inner.down = True
    first = SpoolStore(inner, spool_dir=tmp_path, drain_timeout=0.1)
    first.put("images/a.png", b"png bytes")
    seg = first.open_segment("index/2026-11-24T19_ab12cd34-77.jsonl")
    seg.append(b'{"i": 1}\n')
    first.close()  # the store stays down: the image and the part stay in the spool
    assert first.stats()["pending"] == 2
    inner.down = False
    second = SpoolStore(inner, spool_dir=tmp_path)
    assert second.stats()["adopted"] == 2
    assert second.drain(PATIENCE)
    second.close()
    assert inner.order == ["images/a.png", "index/2026-11-24T19_ab12cd34-77.000000.jsonl"]
    assert not any(tmp_path.iterdir())

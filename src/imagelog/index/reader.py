"""The stream reader: index segments to records, tolerating a torn last line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from .._extras import require
from ..layout import INDEX_PREFIX
from ..stores.base import Store

__all__ = ["iter_segment_lines", "parquet_records", "parse_segment", "segment_keys"]

logger = logging.getLogger("imagelog")


def segment_keys(store: Store) -> list[str]:
    """Every index segment of a run, sorted (by hour, then writer)."""
    return sorted(o.key for o in store.list(INDEX_PREFIX) if o.key.endswith(".jsonl"))


def iter_segment_lines(data: bytes) -> Iterator[tuple[int, bytes, dict[str, Any] | None]]:
    """Yield ``(line number, raw line, record or None if torn/invalid)`` for each non-empty line."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            yield number, raw, None
            continue
        yield number, raw, rec if isinstance(rec, dict) else None


def parse_segment(data: bytes, *, key: str = "", warn: bool = True) -> list[dict[str, Any]]:
    """Parse one segment; invalid lines (a torn tail after a crash) are skipped with a warning."""
    records = []
    for number, raw, rec in iter_segment_lines(data):
        if rec is None:
            if warn:
                logger.warning(
                    "imagelog: skipping torn or invalid line %d of %s (%d bytes)",
                    number,
                    key,
                    len(raw),
                )
            continue
        records.append(rec)
    return records


def parquet_records(data: bytes) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """``(line, record)`` for every row of a compacted hour (``layout.compacted_key``), in its
    order (id, seq): the ``record`` column holds each line as it was. Needs pyarrow."""
    require("pyarrow", "query", "reading a compacted hour")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(pa.BufferReader(data))
    for batch in pf.iter_batches(columns=["record"], batch_size=4096):
        for text in batch.column(0).to_pylist():
            if text is not None:
                yield text.encode("utf-8"), json.loads(text)

"""Follow a run: the records of every writer as they are appended (``imagelog tail -f``).

Each poll lists the index and reads what each JSON Lines segment gained since the last poll
(local segments from the byte where reading stopped; object-store parts, which never change,
once). New segments (an hour rolling over, a new writer, a new part) are picked up by the
listing; segments that compaction or retention removes are forgotten. Only whole lines are
taken: a line still being written is read at the next poll.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from .layout import INDEX_PREFIX, is_segment
from .stores.base import Store
from .stores.local import LocalStore

__all__ = ["follow"]


def _new_bytes(store: Store, key: str, offset: int) -> bytes:
    if isinstance(store, LocalStore):
        with open(store.path_of(key), "rb") as fh:
            fh.seek(offset)
            return fh.read()
    return store.get(key)[offset:]


def follow(
    store: Store,
    *,
    source: str | None = None,
    where: str | None = None,
    poll: float = 0.5,
    stop: threading.Event | None = None,
    from_start: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield records as writers append them, oldest first within each poll, until ``stop`` is
    set (or forever). By default only lines written after the call; ``from_start=True`` also
    yields every line already in the JSON Lines segments."""
    stop = stop if stop is not None else threading.Event()
    offsets: dict[str, int] = {}
    first = True
    while not stop.is_set():
        fresh: list[bytes] = []
        listed = {}
        for info in store.list(INDEX_PREFIX):
            if is_segment(info.key):
                listed[info.key] = info.size
        for key in list(offsets):
            if key not in listed:
                del offsets[key]  # compacted or purged
        for key, size in sorted(listed.items()):
            if first and not from_start:
                offsets[key] = size
                continue
            start = offsets.get(key, 0)
            if size < start:  # rewritten (repair): go on from its new end
                offsets[key] = size
                continue
            if size == start:
                continue
            try:
                data = _new_bytes(store, key, start)
            except FileNotFoundError:
                offsets.pop(key, None)
                continue
            cut = data.rfind(b"\n") + 1
            offsets[key] = start + cut
            fresh.extend(line for line in data[:cut].split(b"\n") if line.strip())
        first = False
        records = _select(fresh, source, where)
        yield from records
        if not records:
            stop.wait(poll)


def _select(lines: list[bytes], source: str | None, where: str | None) -> list[dict[str, Any]]:
    """Parse, filter and sort a poll's lines (``where`` through DuckDB, as in ``records()``)."""
    if not lines:
        return []
    if where is not None:
        import duckdb

        from .query import filters_sql, lines_records_sql

        cond, params = filters_sql(
            source=source, since=None, until=None, include_events=True, where=where
        )
        con = duckdb.connect()
        try:
            rows = con.sql(
                f"SELECT CAST(record AS VARCHAR) FROM ({lines_records_sql('SELECT unnest(?) AS line')}) "
                f"WHERE {cond} ORDER BY id, seq",
                params=[[line.decode("utf-8", "replace") for line in lines], *params],
            ).fetchall()
        finally:
            con.close()
        return [json.loads(r) for (r,) in rows]
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        if source is not None and (rec.get("image") or {}).get("source") != source:
            continue
        out.append(rec)
    out.sort(key=_order)
    return out


def _order(rec: dict[str, Any]) -> tuple[str, int]:
    image = rec.get("image") or {}
    return str(image.get("id") or (rec.get("event") or {}).get("id", "")), int(
        image.get("seq") or 0
    )

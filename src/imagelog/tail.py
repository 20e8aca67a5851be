"""Follow a run: the records of every writer as they are appended (``imagelog tail -f``).

Each poll reads what the index gained since the last one through the records engine's cursor
(``records.SegmentCursor``: only whole lines; new segments, rotation and compaction handled
there) and filters and orders the new lines with the engine's filters.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from .records import Filters, SegmentCursor, check_where, select_lines
from .stores.base import Store

__all__ = ["follow"]


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
    filters = Filters(sources=() if source is None else (source,), where=where, events=True)
    check_where(where)  # a bad filter fails now, not at the first new line
    cursor = SegmentCursor(store, from_end=not from_start)
    while not stop.is_set():
        records = select_lines(list(cursor.lines()), filters)
        yield from records
        if not records:
            stop.wait(poll)

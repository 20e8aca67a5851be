"""The segment writer: this writer's index lines, appended after their images are in place."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..record import dumps
from ..stores.base import Segment, Store

__all__ = ["INDEX_PREFIX", "IndexWriter", "segment_key", "writer_of"]

INDEX_PREFIX = "index/"


def segment_key(hour: str, writer: str) -> str:
    """``index/2026-11-24T19_<writer>.jsonl``: sorts by hour, one file per writer per hour."""
    return f"{INDEX_PREFIX}{hour}_{writer}.jsonl"


def writer_of(key: str) -> str:
    """The writer of a segment key, with or without a part number (object stores).

    >>> writer_of("index/2026-11-24T19_ab12cd34-77.jsonl"), writer_of("index/2026-11-24T19_ab12cd34-77.000003.jsonl")
    ('ab12cd34-77', 'ab12cd34-77')
    """
    name = key.rsplit("/", 1)[-1].removesuffix(".jsonl")
    return name.split("_", 1)[-1].split(".", 1)[0]


def hour_of(created_ns: int) -> str:
    """The UTC hour of a nanosecond timestamp, as used in segment names and image folders."""
    return time.strftime("%Y-%m-%dT%H", time.gmtime(created_ns // 1_000_000_000))


class IndexWriter:
    """Appends records to this writer's current hourly segment; thread-safe.

    ``sync_every`` (seconds) bounds how long appended lines stay un-synced when syncing is on.
    """

    def __init__(
        self,
        store: Store,
        writer: str,
        *,
        sync: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._writer = writer
        self._sync = sync
        self._clock = clock
        self._lock = threading.Lock()
        self._hour = ""
        self._segment: Segment | None = None
        self.lines = 0

    @property
    def current_key(self) -> str | None:
        """The key of the open segment, if any."""
        return segment_key(self._hour, self._writer) if self._segment else None

    def append(self, record: Mapping[str, Any], created_ns: int) -> None:
        """Append one record as one line to the segment of its hour."""
        self.append_many([(record, created_ns)])

    def append_many(self, items: list[tuple[Mapping[str, Any], int]]) -> None:
        """Append records (each with its ``event.created`` in ns) with as few writes as possible."""
        by_hour: dict[str, list[str]] = {}
        for record, created_ns in items:
            by_hour.setdefault(hour_of(created_ns), []).append(dumps(record) + "\n")
        with self._lock:
            for hour, lines in by_hour.items():
                segment = self._segment_for(hour)
                segment.append("".join(lines).encode("utf-8"))
                if self._sync:
                    segment.sync()
                self.lines += len(lines)

    def _segment_for(self, hour: str) -> Segment:
        if self._segment is None or hour > self._hour:
            if self._segment is not None:
                self._segment.close()
            self._segment = self._store.open_segment(segment_key(hour, self._writer))
            self._hour = hour
        return self._segment

    def flush(self) -> None:
        """Make every appended line visible to readers (object stores upload the pending part)."""
        with self._lock:
            if self._segment is not None:
                self._segment.flush()

    def sync(self) -> None:
        """Make every appended line durable."""
        with self._lock:
            if self._segment is not None:
                self._segment.sync()

    def close(self) -> None:
        """Close the open segment."""
        with self._lock:
            if self._segment is not None:
                self._segment.close()
                self._segment = None

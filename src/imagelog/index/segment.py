"""The segment writer: this writer's index lines, appended after their images are in place.

When it closes an hour's segment (the hour rolls over, or the log closes) it leaves the hour's
summary beside it (``layout.summary_key``, ``records.summary``), so counting reads take O(hours).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..layout import hour_of, segment_key, summary_key
from ..record import dumps
from ..stores.base import Segment, Store
from .summary import HourSummary

__all__ = ["SYNC_EVERY", "IndexWriter"]

#: With syncing on, appended lines reach stable storage within this many seconds (group commit).
SYNC_EVERY = 0.05


class IndexWriter:
    """Appends records to this writer's current hourly segment; thread-safe.

    With ``sync=True`` the segment is fsynced as a group commit: at most once every ``sync_every``
    seconds, by the thread whose append finds the interval passed, outside the append lock (so
    the other threads keep appending), plus ``sync_if_due()`` from a timer and ``sync()`` on
    ``flush()``/``close()``. ``sync_every=0`` fsyncs after every append.
    """

    def __init__(
        self,
        store: Store,
        writer: str,
        *,
        sync: bool = False,
        sync_every: float = SYNC_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._writer = writer
        self._sync = sync
        self._sync_every = sync_every
        self._clock = clock
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._hour = ""
        self._segment: Segment | None = None
        self._summary: HourSummary | None = None
        self._dirty = False
        self._last_sync = clock()
        self.lines = 0
        self.syncs = 0

    @property
    def writer(self) -> str:
        """The writer id in the segment names."""
        return self._writer

    @property
    def current_key(self) -> str | None:
        """The key of the open segment, if any."""
        return segment_key(self._hour, self._writer) if self._segment else None

    def append(self, record: Mapping[str, Any], created_ns: int) -> None:
        """Append one record as one line to the segment of its hour."""
        self.append_many([(record, created_ns)])

    def append_line(self, line: str, created_ns: int) -> None:
        """Append one record already serialised (``record.dumps``, no newline)."""
        self._append({hour_of(created_ns): [line + "\n"]})

    def append_lines(self, lines: Sequence[tuple[str, int]]) -> None:
        """Append records already serialised, each with its ``event.created`` in ns, with as few
        writes as possible (one per hour)."""
        by_hour: dict[str, list[str]] = {}
        for line, created_ns in lines:
            by_hour.setdefault(hour_of(created_ns), []).append(line + "\n")
        self._append(by_hour)

    def append_many(self, items: Sequence[tuple[Mapping[str, Any], int]]) -> None:
        """Append records (each with its ``event.created`` in ns) with as few writes as possible."""
        self.append_lines([(dumps(record), created_ns) for record, created_ns in items])

    def _append(self, by_hour: dict[str, list[str]]) -> None:
        with self._lock:
            for hour, lines in by_hour.items():
                data = "".join(lines).encode("utf-8")
                if self._segment is not None and hour < self._hour:
                    self._append_late(hour, data)
                else:
                    self._segment_for(hour).append(data)
                    self._dirty = True
                    if self._summary is not None:
                        self._summary.add(lines, len(data))
                self.lines += len(lines)
        if self._sync:
            self.sync_if_due()

    def _segment_for(self, hour: str) -> Segment:
        if self._segment is None or hour > self._hour:
            if self._segment is not None:
                with self._sync_lock:
                    if self._sync and self._dirty:
                        self._segment.sync()
                        self.syncs += 1
                    self._segment.close()
                    self._dirty = False
                self._leave_summary()
            self._segment = self._store.open_segment(segment_key(hour, self._writer))
            self._hour = hour
            self._summary = HourSummary(hour, self._writer)
        return self._segment

    def _append_late(self, hour: str, data: bytes) -> None:
        """A record of an hour already rolled over: to that hour's segment, so each hour's lines
        stay in its own segments (retention deletes an hour's files and lines together)."""
        late = self._store.open_segment(segment_key(hour, self._writer))
        try:
            late.append(data)
            if self._sync:
                late.sync()
        finally:
            late.close()

    def sync_if_due(self) -> None:
        """Group commit: fsync if lines are waiting and ``sync_every`` has passed since the last."""
        if self._dirty and self._clock() - self._last_sync >= self._sync_every:
            self.sync()

    def flush(self) -> None:
        """Make every appended line visible to readers (object stores upload the pending part)."""
        with self._lock:
            if self._segment is not None:
                self._segment.flush()

    def sync(self) -> None:
        """Make every line appended so far durable (one fsync covers every thread's lines)."""
        with self._lock:
            segment, dirty = self._segment, self._dirty
            self._dirty = False
        with self._sync_lock:  # also waits for an fsync in flight that covers our lines
            if segment is None or not dirty:
                return
            self._last_sync = self._clock()
            try:
                segment.sync()  # a no-op if the hour rolled over and closed it (it was synced then)
            except BaseException:
                self._dirty = True
                raise
            self.syncs += 1

    def close(self) -> None:
        """Sync (when syncing is on) and close the open segment."""
        with self._lock, self._sync_lock:
            if self._segment is not None:
                try:
                    if self._sync and self._dirty:
                        self._segment.sync()
                        self.syncs += 1
                finally:
                    self._segment.close()
                    self._segment = None
                    self._dirty = False
                    self._leave_summary()

    def _leave_summary(self) -> None:
        """Store the closed hour's summary; a summary that cannot be stored is simply absent
        (readers then read the segment)."""
        summary, self._summary = self._summary, None
        if summary is None or not summary.lines:
            return
        try:
            self._store.put(summary_key(summary.hour, self._writer), summary.dumps())
        except Exception:  # never fail an append or a close for an optimisation
            pass

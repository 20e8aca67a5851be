"""Index segments for stores without append: buffered lines uploaded as numbered immutable parts.

An object store cannot append, so a writer's hourly segment ``index/<hour>_<writer>.jsonl`` becomes
a series of objects ``index/<hour>_<writer>.<part>.jsonl`` (part = 000000, 000001, ...). Lines are
buffered in memory and each batch is put once, as a new part, when the segment has held lines for
``interval`` seconds, holds ``max_lines`` lines, or is flushed, synced or closed. Readers list
``index/*.jsonl`` and see the union of the parts: no line is in two parts, and a part is never
rewritten.

With a ``journal_dir`` (the local spool), every buffered line is also appended to a local file named
after the part it will become, so a ``kill -9`` loses no line that ``append()`` accepted: the next
process that opens the same spool uploads the journal as that part (see ``stores/spool.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from ..layout import part_key

__all__ = ["PartFlusher", "PartSegment"]

logger = logging.getLogger("imagelog")

Put = Callable[[str, bytes], None]


class PartSegment:
    """A segment whose lines are uploaded as immutable parts; thread-safe.

    Args:
        put: stores one whole object (the store's ``put``; the spool's when there is one).
        key: the segment key (``index/<hour>_<writer>.jsonl``).
        interval: upload buffered lines at most this many seconds after the first of them.
        max_lines: upload as soon as this many lines are buffered.
        journal_dir: a local folder that mirrors buffered lines (crash safety), or None.
        first_part: the number of the first part (a re-opened segment continues its numbering).
        on_error: told about a failed upload (the part is kept and retried first next time).
    """

    def __init__(
        self,
        put: Put,
        key: str,
        *,
        interval: float = 2.0,
        max_lines: int = 1000,
        journal_dir: Path | None = None,
        first_part: int = 0,
        on_error: Callable[[BaseException], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self._put = put
        self._interval = interval
        self._max_lines = max(1, max_lines)
        self._journal_dir = journal_dir
        self._on_error = on_error
        self._clock = clock
        self._lock = threading.Lock()  # the buffer and the journal
        self._put_lock = threading.Lock()  # parts go out one at a time, in order
        self._buf: list[bytes] = []
        self._lines = 0
        self._first_at: float | None = None
        self._journal_fd = -1
        self._journal_path: Path | None = None
        self._failed: list[tuple[str, bytes, Path | None]] = []
        self.next_part = first_part
        self.parts_put = 0
        if journal_dir is not None:
            journal_dir.mkdir(parents=True, exist_ok=True)

    def append(self, data: bytes) -> None:
        """Buffer whole lines (and journal them); upload a part once ``max_lines`` are buffered."""
        if not data:
            return
        with self._lock:
            if self._journal_dir is not None:
                if self._journal_fd < 0:
                    name = part_key(self.key, self.next_part).rsplit("/", 1)[-1]
                    self._journal_path = self._journal_dir / name
                    self._journal_fd = os.open(
                        self._journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
                    )
                view = memoryview(data)
                while view:
                    view = view[os.write(self._journal_fd, view) :]
            self._buf.append(data)
            self._lines += data.count(b"\n")
            if self._first_at is None:
                self._first_at = self._clock()
            full = self._lines >= self._max_lines
        if full:
            self.flush()

    @property
    def due(self) -> bool:
        """Whether buffered lines are older than ``interval`` (or a failed part awaits a retry)."""
        first = self._first_at
        return bool(self._failed) or (first is not None and self._clock() - first >= self._interval)

    def flush(self) -> None:
        """Upload buffered lines as the next part now (see ``try_flush``)."""
        self.try_flush()

    def try_flush(self) -> bool:
        """Upload buffered lines as the next part now; True if nothing is left unsent.

        A failed upload is kept, reported through ``on_error``, and retried (in order) by the next
        flush; it never raises.
        """
        with self._put_lock:
            with self._lock:
                if self._buf:
                    key = part_key(self.key, self.next_part)
                    self._failed.append((key, b"".join(self._buf), self._journal_path))
                    self.next_part += 1
                    self._buf, self._lines, self._first_at = [], 0, None
                    if self._journal_fd >= 0:
                        os.close(self._journal_fd)
                    self._journal_fd, self._journal_path = -1, None
            while self._failed:
                key, data, journal = self._failed[0]
                try:
                    self._put(key, data)
                except Exception as exc:
                    if self._on_error is not None:
                        self._on_error(exc)
                    return False
                self._failed.pop(0)
                self.parts_put += 1
                if journal is not None:
                    with contextlib.suppress(OSError):
                        journal.unlink()
            return True

    def sync(self) -> None:
        """Upload buffered lines (the only way an object store makes them durable)."""
        self.flush()

    def close(self) -> None:
        """Upload what is buffered and release the journal; lines that still fail are reported."""
        self.flush()
        with self._lock:
            if self._journal_fd >= 0:
                os.close(self._journal_fd)
                self._journal_fd = -1
        if self._failed:
            lines = sum(data.count(b"\n") for _, data, _ in self._failed)
            try:
                logger.warning(
                    "imagelog: %d index line(s) of %s could not be uploaded at close%s",
                    lines, self.key,
                    "; they stay in the local journal" if self._journal_dir else " and are lost",
                )  # fmt: skip
            except Exception:
                pass


class PartFlusher:
    """One background thread per store that uploads the parts of its open segments when due."""

    def __init__(self, name: str = "imagelog-index-parts", tick: float = 0.25) -> None:
        self._name = name
        self._tick = tick
        self._segments: weakref.WeakSet[PartSegment] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, segment: PartSegment) -> None:
        """Watch a segment (starts the thread on first use)."""
        with self._lock:
            self._segments.add(segment)
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def discard(self, segment: PartSegment) -> None:
        """Stop watching a segment."""
        with self._lock:
            self._segments.discard(segment)

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            with self._lock:
                segments = list(self._segments)
            for segment in segments:
                try:
                    if segment.due:
                        segment.flush()
                except Exception:  # flush reports its own errors; never die
                    pass

    def stop(self) -> None:
        """Stop and join the thread (idempotent)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

"""The units of work the queue carries (a frame, an event line) and the books they are counted in."""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections import Counter, defaultdict
from typing import Any

from ._ring import Trigger
from .codecs.base import Codec
from .frames import Frame

__all__ = ["EventJob", "FrameJob", "Stats"]


@dataclasses.dataclass(slots=True)
class FrameJob:
    """A frame to encode and write, with the caller-thread half of its record."""

    frame: Frame
    record: dict[str, Any]
    codec: Codec
    params: dict[str, Any]
    created_ns: int
    source: str
    captured_given: bool = False
    captured_ns: int = 0
    #: with a ring: the encoded bytes (no record inside), once the frame was held
    encoded: bytes | None = None
    #: the trigger that saves it (its window covers the frame's capture time)
    trigger: Trigger | None = None
    #: bytes the ring still counts for it (taken out of the ring by a trigger, not yet written)
    ring_nbytes: int = 0
    #: its file in ``ring_dir`` while held (removed once expired or written)
    ring_path: str | None = None
    #: the writer that logged it, when not this one (adopted from a dead writer's ring_dir)
    writer: str | None = None


@dataclasses.dataclass(slots=True)
class EventJob:
    """An index line with no image (a drop, a purge)."""

    record: dict[str, Any]
    created_ns: int


class Stats:
    """Counters shared by the caller and the background threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.by_source: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.dropped_by_reason: Counter[str] = Counter()
        self.failed_by_reason: Counter[str] = Counter()
        self.warnings_by_kind: Counter[str] = Counter()
        self.last_error: str | None = None
        self.first_error: BaseException | None = None
        #: drop/failure records waiting for a writable index, oldest first
        self.held: collections.deque[tuple[dict[str, Any], int]] = collections.deque()
        self.unrecorded = 0

    def add(self, source: str, key: str, n: int = 1) -> None:
        """Count ``n`` of ``key`` for ``source`` and in total."""
        with self.lock:
            self.counts[key] += n
            self.by_source[source][key] += n

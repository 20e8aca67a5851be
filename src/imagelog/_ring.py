"""The ring: encoded frames held (not written) until a trigger saves a window of them, or they expire.

The encoder threads encode every frame as usual; with a ring, a frame that no trigger's window
covers is held here instead of written. ``trigger()`` takes the held frames of its window out (they
go back to the queue, to be written as ordinary records), and every frame encoded later whose
capture time falls in a window is written straight away. Frames pushed out by the bounds
(``ring`` seconds per source, ``ring_bytes`` in all) *expire*: they are counted and summed up in
one ``expired`` record per ring's worth, never recorded one by one.

Windows are on the capture axis (``@timestamp``: ``captured_at=`` when given, else log time) and
inclusive at both ends: a frame is saved iff ``at - before <= captured <= at + after``.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections import Counter
from typing import Any

from .record import seq_ranges

__all__ = ["Expiry", "Ring", "Trigger"]

#: Windows whose end is this far (ns) behind the newest capture time are forgotten (with no
#: duration bound; otherwise the ring's duration is used when longer).
KEEP_WINDOWS_NS = 60 * 10**9


@dataclasses.dataclass(frozen=True, slots=True)
class Trigger:
    """One trigger: its id, reason, and window ``[start_ns, end_ns]`` on the capture axis."""

    id: str
    reason: str
    at_ns: int
    start_ns: int
    end_ns: int
    sources: frozenset[str] | None

    def covers(self, source: str, captured_ns: int) -> bool:
        """Whether a frame of ``source`` captured at ``captured_ns`` is in this window."""
        return (self.sources is None or source in self.sources) and (
            self.start_ns <= captured_ns <= self.end_ns
        )


@dataclasses.dataclass(slots=True)
class _Held:
    job: Any  # a _jobs.FrameJob (encoded, pixels released)
    writer: str
    source: str
    captured_ns: int
    seq: int
    nbytes: int
    gone: bool = False


@dataclasses.dataclass(slots=True)
class Expiry:
    """What left the ring untriggered since the last summary (one ``expired`` record)."""

    frames: int = 0
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    seqs: list[int] = dataclasses.field(default_factory=list)
    by_source: Counter[str] = dataclasses.field(default_factory=Counter)

    def add(self, h: _Held) -> None:
        """Count one expired frame."""
        if not self.frames or h.captured_ns < self.first_ns:
            self.first_ns = h.captured_ns
        self.last_ns = max(self.last_ns, h.captured_ns)
        self.frames += 1
        self.bytes += h.nbytes
        self.seqs.append(h.seq)
        self.by_source[h.source] += 1

    def seq_ranges(self) -> list[list[int]]:
        """The expired ``image.seq`` values as sorted inclusive ``[first, last]`` ranges."""
        return seq_ranges(self.seqs)


class Ring:
    """Held frames per source, bounded by duration (per source) and bytes (in all)."""

    def __init__(
        self, duration_ns: int | None, max_bytes: int, *, per_source: dict[str, int] | None = None
    ) -> None:
        self.duration_ns = duration_ns
        #: with ``ring={source: duration}``: the sources held, each with its own duration
        self.per_source = per_source
        if per_source:
            self.duration_ns = max(per_source.values())  # for summaries and window pruning
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self._held: dict[str, collections.deque[_Held]] = {}
        self._order: collections.deque[_Held] = collections.deque()  # all sources, oldest first
        self._newest: dict[str, int] = {}
        self.triggers: list[Trigger] = []
        self.bytes = 0  # held + taken by a trigger and not yet written
        self.frames = 0  # held
        self.peak_bytes = 0
        self.expiry: dict[str, Expiry] = {}  # per writer (adopted frames keep theirs)
        self._keep_ns = max(KEEP_WINDOWS_NS, self.duration_ns or 0)

    def holds(self, source: str) -> bool:
        """Whether frames of ``source`` go through the ring (else they are written as usual)."""
        return self.per_source is None or source in self.per_source

    def covering(self, source: str, captured_ns: int) -> Trigger | None:
        """The earliest trigger whose window holds this frame, or None."""
        with self.lock:
            return self._covering(source, captured_ns)

    def _covering(self, source: str, captured_ns: int) -> Trigger | None:
        for t in self.triggers:
            if t.covers(source, captured_ns):
                return t
        return None

    def push(
        self, job: Any, writer: str, source: str, captured_ns: int, seq: int, nbytes: int
    ) -> tuple[Trigger | None, list[_Held]]:
        """Hold an encoded frame. Returns (the trigger that covers it: write it now, not held;
        the frames the bounds pushed out, possibly this one)."""
        with self.lock:
            t = self._covering(source, captured_ns)
            if t is not None:
                return t, []
            h = _Held(job, writer, source, captured_ns, seq, nbytes)
            dq = self._held.get(source)
            if dq is None:
                dq = self._held[source] = collections.deque()
            # in capture order: encoder threads finish frames slightly out of order
            k = len(dq)
            while k and dq[k - 1].captured_ns > captured_ns:
                k -= 1
            dq.insert(k, h)
            self._order.append(h)
            self.bytes += nbytes
            self.frames += 1
            newest = self._newest[source] = max(self._newest.get(source, captured_ns), captured_ns)
            out: list[_Held] = []
            limit = self.duration_ns if self.per_source is None else self.per_source[source]
            if limit is not None:
                while dq and newest - dq[0].captured_ns > limit:
                    out.append(self._expire(dq.popleft()))
            order = self._order
            while self.bytes > self.max_bytes and order:
                old = order.popleft()
                if old.gone:
                    continue
                held = self._held[old.source]
                held.remove(old)  # the oldest held of its source: its deque's first
                out.append(self._expire(old))
            while order and order[0].gone:
                order.popleft()
            self.peak_bytes = max(self.peak_bytes, self.bytes)
            if self.triggers and self.triggers[0].end_ns < newest - self._keep_ns:
                self.triggers = [t for t in self.triggers if t.end_ns >= newest - self._keep_ns]
            return None, out

    def _expire(self, h: _Held) -> _Held:
        h.gone = True
        self.bytes -= h.nbytes
        self.frames -= 1
        e = self.expiry.get(h.writer)
        if e is None:
            e = self.expiry[h.writer] = Expiry()
        e.add(h)
        return h

    def trigger(self, t: Trigger) -> list[Any]:
        """Open a window; take the held frames it covers (oldest first). Their bytes stay counted
        until ``release()`` (after they are written)."""
        with self.lock:
            self.triggers.append(t)
            taken: list[_Held] = []
            for source, dq in self._held.items():
                if t.sources is not None and source not in t.sources:
                    continue
                if not any(t.start_ns <= h.captured_ns <= t.end_ns for h in dq):
                    continue
                keep: collections.deque[_Held] = collections.deque()
                for h in dq:
                    if t.start_ns <= h.captured_ns <= t.end_ns:
                        h.gone = True
                        taken.append(h)
                    else:
                        keep.append(h)
                self._held[source] = keep
            self.frames -= len(taken)
            for h in taken:
                h.job.ring_nbytes = h.nbytes
            taken.sort(key=lambda h: h.seq)
            return [h.job for h in taken]

    def release(self, nbytes: int) -> None:
        """A frame a trigger took is written (or failed): its bytes are free."""
        with self.lock:
            self.bytes -= nbytes

    def _due(self, e: Expiry) -> bool:
        if not e.frames:
            return False
        if self.duration_ns is not None:
            return e.last_ns - e.first_ns >= self.duration_ns
        return e.bytes >= self.max_bytes

    def take_summaries(self, *, force: bool = False) -> list[tuple[str, Expiry]]:
        """Per writer, the frames expired since its last summary, when they span a ring's worth
        (or any, with ``force``)."""
        with self.lock:
            out = [(w, e) for w, e in self.expiry.items() if e.frames and (force or self._due(e))]
            for w, _ in out:
                del self.expiry[w]
            return out

    def expire_all(self) -> list[_Held]:
        """Expire every held frame (at close)."""
        with self.lock:
            out = [self._expire(h) for h in self._order if not h.gone]
            self._order.clear()
            self._held.clear()
            return out

    def held_by_source(self) -> dict[str, int]:
        """Frames held now, per source."""
        with self.lock:
            return {s: len(dq) for s, dq in self._held.items()}

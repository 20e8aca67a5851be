"""The runtime of ``select=``: per-source state, budget claims in the run's store, and the
``not_selected`` summaries (the policies themselves are ``imagelog.select``)."""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .layout import select_claim_key, select_window_prefix
from .record import seq_ranges
from .select import (
    _PERIODS,
    Budget,
    Changed,
    Every,
    Near,
    Sample,
    Select,
    When,
    changed_fraction,
    luma_thumbnail,
    normalise_thumbnail,
)

__all__ = ["SUMMARY_FRAMES", "SUMMARY_SPAN_NS", "Claims", "NotSelected", "Selector"]

logger = logging.getLogger("imagelog")


@dataclasses.dataclass(slots=True)
class _SourceState:
    last_stored_ns: int | None = None
    ref: np.ndarray[Any, Any] | None = None
    run: int = 0  # frames in a row that changed against ref


@dataclasses.dataclass(slots=True)
class NotSelected:
    """Frames ``select=`` passed over since the last summary (one ``not_selected`` event)."""

    frames: int = 0
    first_ns: int = 0
    last_ns: int = 0
    created_ns: int = 0
    hour: int = -1
    seqs: list[int] = dataclasses.field(default_factory=list)
    by_source: Counter[str] = dataclasses.field(default_factory=Counter)
    by_reason: Counter[str] = dataclasses.field(default_factory=Counter)

    def add(self, source: str, reason: str, seq: int, captured_ns: int, created_ns: int) -> None:
        """Count one frame."""
        if not self.frames:
            self.first_ns = self.last_ns = captured_ns
            self.created_ns = created_ns
            self.hour = created_ns // 3_600_000_000_000
        self.first_ns = min(self.first_ns, captured_ns)
        self.last_ns = max(self.last_ns, captured_ns)
        self.frames += 1
        self.seqs.append(seq)
        self.by_source[source] += 1
        self.by_reason[reason] += 1

    def seq_ranges(self) -> list[list[int]]:
        """The frames' ``image.seq`` values as inclusive ``[first, last]`` ranges."""
        return seq_ranges(self.seqs)


#: A summary is written when it holds this many frames or spans this much log time, when the
#: hour changes (so it lands in the hour of its frames and is purged with them), on flush, close.
SUMMARY_FRAMES = 10_000
SUMMARY_SPAN_NS = 60 * 10**9


class Claims:
    """Budget claims in the run's store: ``select/<source>/<per>/<window>/<n>``, each made with
    ``put_if_absent``; a writer that finds a window full stops asking until the next one."""

    #: after a store error, claims are refused (frames not stored) for this long, so a store
    #: that does not answer does not slow every ``log()``.
    RETRY_AFTER_NS = 10 * 10**9

    def __init__(self, store: Any, writer: str, clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.writer = writer
        self.clock = clock
        self._next: dict[tuple[str, str, str], int] = {}
        self._windows: dict[tuple[str, str], str] = {}
        self._down_until = 0

    def claim(self, source: str, b: Budget, created_ns: int) -> bool:
        """Claim one of the ``b.n`` slots of the window holding ``created_ns``; False if full."""
        window = _window_label(created_ns, b.per)
        key = (source, b.per, window)
        n = self._next.get(key)
        if n is not None and n >= b.n:
            return False
        if self._down_until and self.clock() < self._down_until:
            return False
        try:
            if n is None:
                n = self._enter(source, b.per, window, created_ns)
            while n < b.n:
                won = self.store.put_if_absent(
                    select_claim_key(source, b.per, window, n),
                    f'{{"writer":"{self.writer}","created_ns":{created_ns}}}\n'.encode(),
                )
                n += 1
                if won:
                    self._next[key] = n
                    return True
            self._next[key] = n
            return False
        except OSError as exc:
            self._down_until = self.clock() + self.RETRY_AFTER_NS
            logger.warning("imagelog: select budget: cannot claim in %s (%s); frames over "
                           "budget are not stored for 10 s", self.store.url, exc)  # fmt: skip
            return False

    def _enter(self, source: str, per: str, window: str, created_ns: int) -> int:
        """A window seen for the first time: count the claims other writers made in it, and
        delete the source's claims of windows older than the previous one (no writer whose
        clock is within a window of ours still counts on them)."""
        taken = 0
        stale = []
        keep_from = _window_label(created_ns - _PERIODS[per] * 10**9, per)
        prefix = select_window_prefix(source, per, window)
        folder = prefix[: -len(window) - 1]
        for info in self.store.list(folder):
            if info.key.startswith(prefix):
                taken += 1
            elif info.key[len(folder) :].split("/", 1)[0] < keep_from:
                stale.append(info.key)
        if stale:
            self.store.delete(stale)
        old = self._windows.get((source, per))
        self._windows[(source, per)] = window
        if old is not None:
            self._next.pop((source, per, old), None)
        return taken


def _window_label(created_ns: int, per: str) -> str:
    sec = created_ns // 1_000_000_000
    fmt = {"minute": "%Y-%m-%dT%H%M", "hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d"}[per]
    return time.strftime(fmt, time.gmtime(sec))


class Selector:
    """The runtime of ``select=`` for one writer: per-policy, per-source state, the budget claims
    and the pending ``not_selected`` summary. Thread-safe (one lock, held for a decision)."""

    def __init__(self, claims: Claims | None, *, seed: int | None = None) -> None:
        self.claims = claims
        self.lock = threading.Lock()
        self._state: dict[tuple[Select, str], _SourceState] = {}
        self._rng = random.Random(seed)
        self._rngs: dict[Sample, random.Random] = {}
        self.pending = NotSelected()
        self.counts: Counter[tuple[str, str]] = Counter()  # (source, reason) -> frames
        self._warned = 0.0

    def decide(
        self,
        select: Select,
        source: str,
        pixels: np.ndarray[Any, Any] | None,
        meta: Mapping[str, Any],
        captured_ns: int,
        created_ns: int,
    ) -> str | None:
        """None to store the frame, else why not (one of ``REASONS``)."""
        with self.lock:
            key = (select, source)
            st = self._state.get(key)
            if st is None:
                st = self._state[key] = _SourceState()
            return self._decide(select, st, source, pixels, meta, captured_ns, created_ns)

    def _decide(
        self,
        select: Select,
        st: _SourceState,
        source: str,
        pixels: np.ndarray[Any, Any] | None,
        meta: Mapping[str, Any],
        captured_ns: int,
        created_ns: int,
    ) -> str | None:
        thumb: np.ndarray[Any, Any] | None = None
        candidate = False
        first_no: str | None = None
        always = False
        heartbeat = False
        cap: float | None = None
        budgets: list[Budget] = []
        for p in select.parts:
            if isinstance(p, Changed):
                fired, thumb = self._changed(p, st, pixels)
                candidate |= fired
                first_no = first_no or "unchanged"
            elif isinstance(p, Sample):
                rng = self._rngs.get(p)
                if rng is None:
                    rng = self._rngs[p] = self._rng if p.seed is None else random.Random(p.seed)
                candidate |= rng.random() < p.fraction
                first_no = first_no or "not_sampled"
            elif isinstance(p, Near):
                v = _number_in(meta, p.key)
                candidate |= v is not None and abs(v - p.at) <= p.within
                first_no = first_no or "not_near"
            elif isinstance(p, When):
                always = always or self._when(p, meta)
            elif isinstance(p, Every):
                if p.at_least is not None and (
                    st.last_stored_ns is None or captured_ns - st.last_stored_ns >= p.at_least * 1e9
                ):
                    heartbeat = True
                if p.at_most is not None:
                    cap = p.at_most if cap is None else max(cap, p.at_most)
            elif isinstance(p, Budget):
                budgets.append(p)
        if not always:
            # with no candidate part (only bounds) every frame is a candidate
            if first_no is not None and not (candidate or heartbeat):
                return first_no
            if (
                cap is not None
                and st.last_stored_ns is not None
                and captured_ns - st.last_stored_ns < cap * 1e9
            ):
                return "rate"
            for b in budgets:
                if self.claims is None or not self.claims.claim(source, b, created_ns):
                    return "budget"
        st.last_stored_ns = captured_ns
        if thumb is not None:
            st.ref = normalise_thumbnail(thumb)
            st.run = 0
        return None

    @staticmethod
    def _changed(
        p: Changed, st: _SourceState, pixels: np.ndarray[Any, Any] | None
    ) -> tuple[bool, np.ndarray[Any, Any] | None]:
        if pixels is None:
            return True, None  # bytes passed through: cannot judge, stored
        thumb = luma_thumbnail(pixels)
        if thumb is None:
            return True, None
        if st.ref is None:
            return True, thumb
        if changed_fraction(st.ref, normalise_thumbnail(thumb), p.tolerance) >= p.threshold:
            st.run += 1
        else:
            st.run = 0
        return st.run >= p.persist, thumb

    def _when(self, p: When, meta: Mapping[str, Any]) -> bool:
        try:
            return bool(p.predicate(meta))
        except Exception as exc:
            now = time.monotonic()
            if now - self._warned > 60:
                self._warned = now
                logger.warning("imagelog: select when(%s) raised %s: %s (counted as false)",
                               p.name, type(exc).__name__, exc)  # fmt: skip
            return False

    def not_selected(
        self, source: str, reason: str, seq: int, captured_ns: int, created_ns: int
    ) -> NotSelected | None:
        """Count a frame not stored; return the summary that is due (to be written), if any."""
        with self.lock:
            self.counts[(source, reason)] += 1
            out = None
            p = self.pending
            if p.frames and (
                created_ns // 3_600_000_000_000 != p.hour
                or p.frames >= SUMMARY_FRAMES
                or created_ns - p.created_ns >= SUMMARY_SPAN_NS
            ):
                out, self.pending = p, NotSelected()
            self.pending.add(source, reason, seq, captured_ns, created_ns)
            return out

    def take_due(self, created_ns: int) -> NotSelected | None:
        """The pending summary if it spans ``SUMMARY_SPAN_NS`` by now (checked on stored frames,
        so a summary does not wait for the next frame not stored)."""
        p = self.pending
        if not p.frames or created_ns - p.created_ns < SUMMARY_SPAN_NS:
            return None
        with self.lock:
            p, self.pending = self.pending, NotSelected()
            return p if p.frames else None

    def take_pending(self) -> NotSelected | None:
        """The summary of what is pending (on flush and close), if any."""
        with self.lock:
            p, self.pending = self.pending, NotSelected()
            return p if p.frames else None

    def stats(self) -> tuple[int, dict[str, int], dict[str, dict[str, int]]]:
        """(frames not selected, per reason, per source per reason)."""
        with self.lock:
            by_reason: Counter[str] = Counter()
            by_source: dict[str, dict[str, int]] = {}
            for (s, r), n in self.counts.items():
                by_reason[r] += n
                by_source.setdefault(s, {})[r] = n
            return sum(by_reason.values()), dict(by_reason), by_source


def _number_in(meta: Mapping[str, Any], key: str) -> float | None:
    v = meta.get(key)
    if v is None:
        labels = meta.get("labels")
        v = labels.get(key) if isinstance(labels, Mapping) else None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if f == f else None

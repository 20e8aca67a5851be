"""The ``imagelog-maintenance`` thread: repair on open, the group-commit timer, retention passes,
and (with a ring) the poll for triggers from outside the process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .index.segment import IndexWriter
from .layout import hour_of
from .retention import Retention
from .tiers import TierWorker

__all__ = ["CHECK_EVERY", "MIN_PASS_EVERY", "POLL_EVERY", "RESCAN_EVERY", "Maintenance"]

#: How often (seconds) the two newest hours are rescanned when other writers add to them.
RESCAN_EVERY = 30.0
#: The maintenance thread's longest sleep between retention checks (seconds).
CHECK_EVERY = 1.0
#: Retention passes asked for by writes run at most this often (seconds): while over quota every
#: frame asks for one, and a pass lists and reads part of the run.
MIN_PASS_EVERY = 0.1
#: How often (seconds) a ring writer looks for triggers left under ``triggers/`` (``poll``).
POLL_EVERY = 1.0


class Maintenance:
    """The ``imagelog-maintenance`` thread: repair on open, group-commit timer, retention.

    Retention work never runs in the caller's thread: ``wake()`` asks for a pass, ``settle()``
    waits for one that started after the call.
    """

    def __init__(
        self,
        *,
        retention: Retention | None,
        index: IndexWriter | None,
        sync_every: float,
        writer: str,
        repair: Callable[[], None] | None = None,
        report: Callable[[str, BaseException], None],
        rescan_every: float = RESCAN_EVERY,
        poll: Callable[[], None] | None = None,
        poll_every: float = POLL_EVERY,
        tiers: TierWorker | None = None,
    ) -> None:
        self.retention = retention if retention is not None and retention.enabled else None
        self.index = index
        self.sync_every = sync_every
        self.writer = writer
        self.repair = repair
        self.report = report
        self.rescan_every = rescan_every
        self.poll = poll
        self.poll_every = poll_every
        self.tiers = tiers  # retention tiers: a thread of their own, started and stopped here
        self._cond = threading.Condition()
        self._requested = 0
        self._completed = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def needed(self) -> bool:
        """Whether there is anything for the thread to do."""
        return (
            self.retention is not None
            or self.index is not None
            or self.repair is not None
            or self.poll is not None
            or self.tiers is not None
        )

    def start(self) -> None:
        """Start the thread (idempotent)."""
        with self._lock:
            if self._thread is not None or not self.needed or self._stop:
                return
            self._thread = threading.Thread(
                target=self._run, name="imagelog-maintenance", daemon=True
            )
            self._thread.start()
            if self.tiers is not None:
                self.tiers.start()

    def wake(self) -> None:
        """Ask for a retention pass now."""
        with self._cond:
            self._requested += 1
            self._cond.notify_all()

    def settle(self, timeout: float | None) -> bool:
        """Wait for a pass that started after this call; False on timeout (or not running)."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                return True
            self._requested += 1
            target = self._requested
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._completed >= target or self._stop, timeout)

    def stop(self, timeout: float | None) -> None:
        """Run a last pass, stop the thread and join it (up to ``timeout``)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self.tiers is not None:
            self.tiers.stop(timeout)
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _tick(self) -> float:
        ticks = [CHECK_EVERY] if self.retention is not None else []
        if self.index is not None:
            ticks.append(self.sync_every)
        if self.poll is not None:
            ticks.append(self.poll_every)
        return min(ticks) if ticks else 0.0

    def _run(self) -> None:
        if self.repair is not None:
            try:
                self.repair()
            except Exception as exc:
                self.report("repair", exc)
        retention = self.retention
        if retention is not None:
            try:
                retention.scan()
            except Exception as exc:
                self.report("retention-scan", exc)
        tick = self._tick()
        if not tick:
            with self._cond:
                self._completed = self._requested
                self._cond.notify_all()
            return
        last_hour = ""
        last_rescan = last_pass = time.monotonic()
        last_poll = last_pass - self.poll_every
        while True:
            with self._cond:
                if not self._stop and self._completed >= self._requested:
                    self._cond.wait(tick)
                if self.retention is not None and not self._stop:  # bound the passes' cost
                    self._cond.wait_for(
                        lambda: self._stop, last_pass + MIN_PASS_EVERY - time.monotonic()
                    )
                stopping = self._stop
                token = self._requested
            last_pass = time.monotonic()
            if self.poll is not None and last_pass - last_poll >= self.poll_every:
                last_poll = last_pass
                try:
                    self.poll()
                except Exception as exc:
                    self.report("trigger-poll", exc)
            try:
                if self.index is not None:
                    self.index.sync_if_due()
                if retention is not None:
                    hour = hour_of(retention.clock())
                    mono = time.monotonic()
                    if last_hour and hour != last_hour:
                        retention.rescan({last_hour, hour})
                        last_rescan = mono
                    elif mono - last_rescan >= self.rescan_every:
                        last_rescan = mono
                        if retention.others_writing(hour, self.writer):
                            retention.rescan({hour_of(retention.clock() - 3600 * 10**9), hour})
                    last_hour = hour
                    retention.enforce()
            except Exception as exc:
                self.report("retention", exc)
            with self._cond:
                self._completed = max(self._completed, token)
                self._cond.notify_all()
            if stopping:
                return

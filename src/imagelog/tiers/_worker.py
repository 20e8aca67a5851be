"""A writer's tier passes (``open(tiers=...)``) in their own niced thread, ``imagelog-tiers``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ..stores.base import Store
from ._ladder import Ladders, save_ladders
from ._pass import TierReport, run_pass

#: A writer's tier thread: CPU seconds per pass, the share of one core it may use while it has
#: work, how long it waits when nothing is left to do, and its nice increment.
PASS_BUDGET_S = 1.0
CPU_SHARE = 0.5
IDLE_WAIT_S = 60.0
TIER_NICE = 10


class TierWorker:
    """A writer's tier passes (``open(tiers=...)``), in the ``imagelog-tiers`` thread that the
    maintenance thread starts and stops: niced (``TIER_NICE``), at most ``budget_s`` CPU seconds
    per pass and ``share`` of one core while work is left, one pass per ``idle_s`` once none is.
    Errors go to ``report`` and never stop the writer."""

    def __init__(
        self,
        store: Store,
        ladders: Ladders,
        *,
        keep: Callable[[Mapping[str, Any]], bool] | None,
        report: Callable[[str, BaseException], None],
        clock: Callable[[], int] = time.time_ns,
        budget_s: float = PASS_BUDGET_S,
        share: float = CPU_SHARE,
        idle_s: float = IDLE_WAIT_S,
    ) -> None:
        import threading

        self.store = store
        self.ladders = ladders
        self.keep = keep
        self.report = report
        self.clock = clock
        self.budget_s = budget_s
        self.share = share
        self.idle_s = idle_s
        self.passes = 0
        self.last: TierReport | None = None
        self._seen: dict[str, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        import threading

        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="imagelog-tiers", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run a pass now."""
        self._wake.set()

    def stop(self, timeout: float | None) -> None:
        """Stop after the frame in hand (a pass stops between frames) and join."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        from .._priority import lower_priority

        lower_priority(TIER_NICE)
        try:
            save_ladders(self.store, self.ladders)
        except Exception as exc:
            self.report("tiers", exc)
        while not self._stop.is_set():
            wait = self.idle_s
            try:
                rep = run_pass(self.store, self.ladders, now_ns=self.clock(), keep=self.keep,
                               budget_s=self.budget_s, seen=self._seen, stop=self._stop)  # fmt: skip
                self.passes += 1
                self.last = rep
                for err in rep.errors[:3]:
                    self.report("tiers", RuntimeError(err))
                if not rep.done:  # work left: rest so the pass uses ``share`` of a core
                    wait = max(0.01, rep.cpu_s * (1 - self.share) / self.share)
            except Exception as exc:
                self.report("tiers", exc)
            self._wake.wait(wait)
            self._wake.clear()

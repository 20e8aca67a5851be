"""Background errors reported through the ``imagelog`` logger, at a bounded rate."""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["REPORT_EVERY", "RateLimitedReporter"]

REPORT_EVERY = 60.0
logger = logging.getLogger("imagelog")


class RateLimitedReporter:
    """Warns about each kind of background error at most once per ``every`` seconds.

    A logging failure (a broken handler at interpreter exit) is swallowed: reporting must never
    crash a background thread, let alone the host program.
    """

    def __init__(self, every: float | None = None) -> None:
        self.every = REPORT_EVERY if every is None else every  # read now: tests may lengthen it
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def warn(self, kind: str, where: str, exc: BaseException, context: str = "") -> None:
        """Warn ``imagelog: <where> <kind>: <Error>: <text> (<context>...)`` unless muted."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -self.every) < self.every:
                return
            self._last[kind] = now
        extra = f"{context}; " if context else ""
        try:
            logger.warning(
                "imagelog: %s %s: %s: %s (%scounted in stats(); repeats muted for %ds)",
                where, kind, type(exc).__name__, exc, extra, int(self.every),
            )  # fmt: skip
        except Exception:
            pass

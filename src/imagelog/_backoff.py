"""Retry delays: one schedule (doubling, capped) for every loop that waits on failing storage."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable

__all__ = ["STORAGE_ERRNOS", "Backoff", "Doubling", "storage_reason"]

#: The errors of storage that a retry may outlive (pause and back off) or that name a cause.
STORAGE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.EIO,
}


class Doubling:
    """A delay that starts at ``first`` on the first failure, doubles on each further one up to
    ``longest``, and resets on success (not thread-safe: its owner holds the lock).

    >>> d = Doubling(0.25, 1.0)
    >>> [d.fail() for _ in range(4)], d.failing
    ([0.25, 0.5, 1.0, 1.0], True)
    >>> d.reset(); d.failing
    False
    """

    def __init__(self, first: float, longest: float) -> None:
        self.first = first
        self.longest = longest
        self.current = 0.0

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed (no success since)."""
        return self.current > 0

    def fail(self) -> float:
        """Record a failure; the delay to wait before the next attempt."""
        self.current = self.first if not self.failing else min(self.current * 2, self.longest)
        return self.current

    def reset(self) -> None:
        """Record a success: the next failure waits ``first`` again."""
        self.current = 0.0


class Backoff:
    """Writing paused by a storage error (disk full, read-only, folder gone) until a probe succeeds.

    While paused, frames fail at once without being encoded (so the queue keeps moving and
    ``log()`` never waits on a dead disk); one frame at a time is tried again after a delay that
    doubles from ``first`` up to ``longest`` seconds.
    """

    def __init__(
        self,
        *,
        first: float = 0.05,
        longest: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.reason: str | None = None
        self.skipped = 0
        self._delay = Doubling(first, longest)
        self._next = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def blocked(self) -> str | None:
        """The reason writing is paused, or None if this thread may write (or probe)."""
        if self.reason is None:  # the common case, without the lock
            return None
        return self._blocked()

    def _blocked(self) -> str | None:
        with self._lock:
            reason = self.reason
            if reason is None or (not self._probing and self.clock() >= self._next):
                self._probing = reason is not None
                return None
            self.skipped += 1
            return reason

    def failed(self, reason: str) -> bool:
        """Pause (or stay paused) after a storage error; True if this starts a pause."""
        with self._lock:
            started = self.reason is None
            if started:
                self.skipped = 0
                self._delay.reset()
            self._next = self.clock() + self._delay.fail()
            self.reason = reason
            self._probing = False
            return started

    def succeeded(self) -> bool:
        """A write went through: resume; True if writing was paused."""
        if self.reason is None:
            return False
        with self._lock:
            was = self.reason is not None
            self.reason = None
            self._probing = False
            return was


def storage_reason(exc: BaseException) -> str:
    """The ``event.reason`` of a failed write: ``disk_full``, ``read_only``, ``permission``,
    ``missing``, ``io_error``, ``storage`` (another ``OSError``) or ``encode``."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EROFS: "read_only",
                errno.EACCES: "permission", errno.EPERM: "permission", errno.ENOENT: "missing",
                errno.EIO: "io_error"}[exc.errno]  # fmt: skip
    if isinstance(exc, OSError):
        return "storage"
    return "encode"

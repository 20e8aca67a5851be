"""``min_free_bytes`` on the write path: the writer's cached answer to "is there room?"."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .stores.base import Store

__all__ = ["FreeSpaceGuard"]


class FreeSpaceGuard:
    """``min_free_bytes`` for the writer: asks the filesystem at most every ``every`` seconds."""

    def __init__(
        self,
        store: Store,
        min_free_bytes: int,
        *,
        every: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.min_free_bytes = min_free_bytes
        self.every = every
        self.clock = clock
        self._at = -every
        self._free: int | None = None
        self._lock = threading.Lock()

    def ok(self) -> bool:
        """Whether there is at least ``min_free_bytes`` free (or the store has no such limit)."""
        # every worker thread asks: none may see the time updated before the answer is stored
        with self._lock:
            now = self.clock()
            if now - self._at >= self.every:
                self._free = self.store.free_bytes()
                self._at = now
            free = self._free
        return free is None or free >= self.min_free_bytes

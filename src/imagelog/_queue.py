"""The byte-bounded queue between ``log()`` and the encoders, with the on-full policies and flush."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from .settings import OnFull

__all__ = ["ByteQueue", "Closed", "Item"]


class Closed(Exception):
    """The queue is closed: no more items will come."""


class Item:
    """One unit of background work and its byte cost (counted until ``done``)."""

    __slots__ = ("nbytes", "payload", "seq")

    def __init__(self, payload: Any, nbytes: int) -> None:
        self.payload = payload
        self.nbytes = nbytes
        self.seq = 0


class ByteQueue:
    """A FIFO bounded by the bytes of the items queued *or being processed*.

    Bytes are released by ``done()``, after the item is written, so memory stays under
    ``max_bytes`` however slow the storage is. One item larger than the bound is admitted when
    nothing else is in flight, so an oversized frame is never refused.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: collections.deque[Item] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._bytes = 0
        self._seq = 0
        self._pending: dict[int, Item] = {}
        self._closed = False
        self.peak_bytes = 0

    @property
    def bytes(self) -> int:
        """Bytes queued or in processing."""
        return self._bytes

    def __len__(self) -> int:
        """Items queued or in processing."""
        return len(self._pending)

    def _fits(self, nbytes: int) -> bool:
        return self._bytes + nbytes <= self.max_bytes or not self._pending

    def _admit(self, item: Item) -> None:
        self._seq += 1
        item.seq = self._seq
        self._pending[item.seq] = item
        self._items.append(item)
        self._bytes += item.nbytes
        self.peak_bytes = max(self.peak_bytes, self._bytes)
        self._cond.notify_all()

    def put(self, item: Item, policy: OnFull, timeout: float | None = None) -> list[Item]:
        """Enqueue ``item`` under ``policy``; return the items dropped to honour the bound.

        ``BLOCK`` waits for room (``timeout`` None = forever; on timeout the item itself is
        returned as dropped). Raises ``Closed`` if the queue is closed.
        """
        with self._cond:
            if self._closed:
                raise Closed
            if self._fits(item.nbytes):
                self._admit(item)
                return []
            if policy is OnFull.DROP_NEWEST:
                return [item]
            if policy is OnFull.DROP_OLDEST:
                dropped: list[Item] = []
                kept: list[Item] = []
                while self._items and not self._fits(item.nbytes):
                    old = self._items.popleft()
                    if old.nbytes == 0:  # control items (drop records) are never dropped
                        kept.append(old)
                        continue
                    self._release(old)
                    dropped.append(old)
                self._items.extendleft(reversed(kept))
                if self._fits(item.nbytes):
                    self._admit(item)
                else:  # everything left is being encoded right now: the newest gives way
                    dropped.append(item)
                return dropped
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._fits(item.nbytes):
                if self._closed:
                    raise Closed
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return [item]
                self._cond.wait(remaining)
            self._admit(item)
            return []

    def put_control(self, item: Item) -> None:
        """Enqueue a zero-cost item (a drop record) that bypasses the bound; allowed while closing."""
        with self._cond:
            self._admit(item)

    def get(self, timeout: float | None = None) -> Item | None:
        """Take the next item; None on timeout. Raises ``Closed`` once closed and empty."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._items:
                if self._closed:
                    raise Closed
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._items.popleft()

    def _release(self, item: Item) -> None:
        if self._pending.pop(item.seq, None) is not None:
            self._bytes -= item.nbytes
        self._cond.notify_all()

    def done(self, item: Item) -> None:
        """Mark an item finished (written or failed): its bytes are free again."""
        with self._cond:
            self._release(item)

    def oldest(self) -> Item | None:
        """The oldest item queued or in processing, or None."""
        with self._cond:
            return next(iter(self._pending.values()), None)

    def mark(self) -> int:
        """The sequence number of the last item admitted so far (for ``wait_done``)."""
        with self._cond:
            return self._seq

    def wait_done(self, upto: int, timeout: float | None) -> bool:
        """Wait until every item admitted up to ``upto`` is done; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending and next(iter(self._pending)) <= upto:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        """No more puts; ``get`` raises ``Closed`` once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> list[Item]:
        """Remove and return every queued (not yet taken) item, releasing its bytes."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            for item in items:
                self._release(item)
            return items

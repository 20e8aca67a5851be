"""The byte-bounded queue between ``log()`` and the encoders, with the on-full policies and flush.

Items travel through a ``queue.SimpleQueue`` (implemented in C: a put costs well under a
microsecond); a lock guards only the byte accounting. Dropping the oldest frame marks it cancelled
where it stands in the queue; the worker that takes it skips it.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import QueueClosed
from .settings import OnFull

__all__ = ["ByteQueue", "Item"]

_STOP = object()


class Item:
    """One unit of background work and its byte cost (counted until ``done``)."""

    __slots__ = ("cancelled", "nbytes", "payload", "seq", "taken")

    def __init__(self, payload: Any, nbytes: int) -> None:
        self.payload = payload
        self.nbytes = nbytes
        self.seq = 0
        self.cancelled = False
        self.taken = False


class ByteQueue:
    """A FIFO bounded by the bytes of the items queued *or being processed*.

    Bytes are released by ``done()``, after the item is written, so memory stays under
    ``max_bytes`` however slow the storage is. One item larger than the bound is admitted when
    nothing else is in flight, so an oversized frame is never refused.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._order: collections.deque[Item] = collections.deque()  # queued, oldest first
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0
        self._bytes = 0
        self._seq = 0
        self._pending: dict[int, Item] = {}
        # flush()/close() waiters: (upto, event), woken only when their items are done, so a
        # finished frame does not wake a waiting thread that then has to take the GIL to sleep again
        self._flushers: list[tuple[int, threading.Event]] = []
        self._flush_upto = -1  # the lowest ``upto`` among them
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
        self._bytes += item.nbytes
        if self._bytes > self.peak_bytes:
            self.peak_bytes = self._bytes
        if item.nbytes:
            self._order.append(item)
        self._q.put(item)

    def put(self, item: Item, policy: OnFull, timeout: float | None = None) -> list[Item]:
        """Enqueue ``item`` under ``policy``; return the items dropped to honour the bound.

        ``BLOCK`` waits for room (``timeout`` None = forever; on timeout the item itself is
        returned as dropped). Raises ``QueueClosed`` if the queue is closed.
        """
        with self._lock:
            if self._closed:
                raise QueueClosed
            if self._fits(item.nbytes):
                self._admit(item)
                return []
            if policy is OnFull.DROP_NEWEST:
                return [item]
            if policy is OnFull.DROP_OLDEST:
                dropped = self._cancel_oldest(item.nbytes)
                if self._fits(item.nbytes):
                    self._admit(item)
                else:  # everything left is being encoded right now: the newest gives way
                    dropped.append(item)
                return dropped
            deadline = None if timeout is None else time.monotonic() + timeout
            self._waiting += 1
            try:
                while not self._fits(item.nbytes):
                    if self._closed:
                        raise QueueClosed
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return [item]
                    self._cond.wait(remaining)
            finally:
                self._waiting -= 1
            self._admit(item)
            return []

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def fits(self, nbytes: int) -> bool:
        """Whether an item of ``nbytes`` would be admitted now."""
        return self._fits(nbytes)

    def evict(self, nbytes: int) -> list[Item]:
        """Cancel the oldest queued items (not those being processed) until ``nbytes`` fits;
        return them (``drop_oldest`` before the new frame is copied)."""
        if self._fits(nbytes):  # the common case, without the lock
            return []
        with self._lock:
            return self._cancel_oldest(nbytes)

    def queued(self) -> bool:
        """Whether a frame waits in the queue (queued, not yet taken by a worker)."""
        with self._lock:
            order = self._order
            while order and (order[0].taken or order[0].cancelled):
                order.popleft()
            return bool(order)

    def evict_oldest(self, match: Callable[[Item], bool]) -> Item | None:
        """Cancel the oldest queued frame (not one being processed) if ``match`` says so, and
        return it; None if there is none or it does not match."""
        with self._lock:
            order = self._order
            while order and (order[0].taken or order[0].cancelled):
                order.popleft()
            if not order or not match(order[0]):
                return None
            old = order.popleft()
            old.cancelled = True
            self._release(old)
            return old

    def _cancel_oldest(self, nbytes: int) -> list[Item]:
        """Under the lock: cancel queued items, oldest first, until ``nbytes`` fits."""
        dropped: list[Item] = []
        while self._order and not self._fits(nbytes):
            old = self._order.popleft()
            if old.taken or old.cancelled:
                continue
            old.cancelled = True
            self._release(old)
            dropped.append(old)
        return dropped

    def put_control(self, item: Item) -> None:
        """Enqueue a zero-byte item (a drop record) that bypasses the bound; allowed while closing."""
        with self._lock:
            self._admit(item)

    def get(self, timeout: float | None = None) -> Item | None:
        """Take the next live item; None on timeout. Raises ``QueueClosed`` at the stop marker."""
        while True:
            try:
                obj = self._q.get(timeout=timeout)
            except queue.Empty:
                return None
            if obj is _STOP:
                raise QueueClosed
            item: Item = obj
            with self._lock:
                if item.cancelled:
                    continue
                item.taken = True
                order = self._order
                while order and (order[0].taken or order[0].cancelled):
                    order.popleft()
            return item

    def _release(self, item: Item) -> None:
        if self._pending.pop(item.seq, None) is not None:
            self._bytes -= item.nbytes
        if self._waiting:  # producers waiting for room (``block``)
            self._cond.notify_all()
        if self._flushers and item.seq <= self._flush_upto:
            self._wake_flushers()

    def _wake_flushers(self) -> None:
        first = next(iter(self._pending), None)
        left = []
        for upto, event in self._flushers:
            if first is None or first > upto:
                event.set()
            else:
                left.append((upto, event))
        self._flushers = left
        self._flush_upto = min((u for u, _ in left), default=-1)

    def done(self, item: Item) -> None:
        """Mark an item finished (written or failed): its bytes are free again."""
        with self._lock:
            self._release(item)

    def oldest(self) -> Item | None:
        """The oldest item queued or in processing, or None."""
        with self._cond:
            return next(iter(self._pending.values()), None)

    def mark(self) -> int:
        """The sequence number of the last item admitted so far (for ``wait_done``)."""
        with self._lock:
            return self._seq

    def wait_done(self, upto: int, timeout: float | None) -> bool:
        """Wait until every item admitted up to ``upto`` is done; False on timeout."""
        with self._lock:
            if not self._pending or next(iter(self._pending)) > upto:
                return True
            event = threading.Event()
            self._flushers.append((upto, event))
            self._flush_upto = min(self._flush_upto, upto) if self._flush_upto >= 0 else upto
        if event.wait(timeout):
            return True
        with self._lock:
            if (upto, event) in self._flushers:
                self._flushers.remove((upto, event))
                self._flush_upto = min((u for u, _ in self._flushers), default=-1)
            return event.is_set()

    def close(self, workers: int) -> None:
        """No more puts; each of ``workers`` consumers gets a stop marker after what is queued."""
        with self._lock:
            self._closed = True
            if self._waiting:
                self._cond.notify_all()
        for _ in range(workers):
            self._q.put(_STOP)

    def drain(self) -> list[Item]:
        """Cancel every queued (not yet taken) item, releasing its bytes; return them."""
        with self._lock:
            items = [i for i in self._pending.values() if not i.taken and not i.cancelled]
            for item in items:
                item.cancelled = True
                self._release(item)
            self._order.clear()
            return items

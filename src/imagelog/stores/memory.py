"""An in-memory store for tests: the same protocol as a folder, nothing on disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import ClassVar

from .base import ObjectCapabilities, ObjectInfo, check_key

__all__ = ["MemorySegment", "MemoryStore"]


class MemorySegment:
    """An append-only segment kept as bytes in its store."""

    def __init__(self, store: MemoryStore, key: str) -> None:
        self._store = store
        self._key = key

    def append(self, data: bytes) -> None:
        """Append to the stored object."""
        with self._store._lock:
            old = self._store._objects.get(self._key, (b"", 0.0))[0]
            self._store._objects[self._key] = (old + data, time.time())

    def flush(self) -> None:
        """Nothing to flush."""

    def sync(self) -> None:
        """Nothing to sync."""

    def close(self) -> None:
        """Nothing to close."""


class MemoryStore(ObjectCapabilities):
    """A dict of key -> bytes; ``memory://name`` opens the same dict again within one process."""

    _named: ClassVar[dict[str, MemoryStore]] = {}
    concurrency = 2

    def __init__(self, name: str = "") -> None:
        self.url = f"memory://{name}"
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """The process-wide store called ``name``."""
        if name not in cls._named:
            cls._named[name] = cls(name)
        return cls._named[name]

    def put(self, key: str, data: bytes, *, sync: bool = False) -> None:
        """Store a copy of ``data``."""
        check_key(key)
        with self._lock:
            self._objects[key] = (bytes(data), time.time())

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store a copy of ``data`` unless ``key`` exists; True if stored."""
        check_key(key)
        with self._lock:
            if key in self._objects:
                return False
            self._objects[key] = (bytes(data), time.time())
            return True

    def get(self, key: str) -> bytes:
        """Return the bytes under ``key``."""
        check_key(key)
        with self._lock:
            try:
                return self._objects[key][0]
            except KeyError:
                raise FileNotFoundError(key) from None

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """A slice of the bytes under ``key``."""
        return self.get(key)[start:end]

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        check_key(key)
        with self._lock:
            return key in self._objects

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix``, sorted by key."""
        with self._lock:
            items = sorted((k, v) for k, v in self._objects.items() if k.startswith(prefix))
        for key, (data, mtime) in items:
            yield ObjectInfo(key, len(data), mtime)

    def delete(self, keys: Iterable[str]) -> None:
        """Delete keys (``KeyOutsideRun``: nothing deleted)."""
        keys = [check_key(key) for key in keys]
        with self._lock:
            for key in keys:
                self._objects.pop(key, None)

    def open_segment(self, key: str) -> MemorySegment:
        """An append-only segment."""
        return MemorySegment(self, key)

    def close(self) -> None:
        """Nothing to release."""

"""The storage protocol: what the pipeline needs from a local folder or an object store."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import KeyOutsideRun

__all__ = ["ObjectCapabilities", "ObjectInfo", "Segment", "Store", "check_key"]


def check_key(key: object) -> str:
    """``key`` if it can name an object inside the run, else ``KeyOutsideRun``.

    A key is ``/``-separated parts, none empty, ``.`` or ``..``, with no backslash or NUL (so it
    is not absolute either). Every store checks the keys it reads, writes and deletes with this
    rule; a local folder also checks where symlinks lead (``LocalStore.path_of``).

    >>> check_key("images/2026/a.png")
    'images/2026/a.png'
    >>> check_key("../secret.png")
    Traceback (most recent call last):
    ...
    imagelog.errors.KeyOutsideRun: key '../secret.png' is not inside the run (a '..' part)
    """
    why = None
    if not isinstance(key, str) or not key:
        why = "empty"
    elif "\\" in key or "\0" in key:
        why = "a backslash or NUL"
    elif key.startswith("/"):
        why = "absolute"
    else:
        for part in key.split("/"):
            if part in ("", ".", ".."):
                why = f"a {part!r} part" if part else "an empty part"
                break
    if why is not None or not isinstance(key, str):
        raise KeyOutsideRun(f"key {key!r} is not inside the run ({why})", path=str(key))
    return key


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object: its key (relative to the run root), size in bytes and mtime (Unix s)."""

    key: str
    size: int
    mtime: float


@runtime_checkable
class Segment(Protocol):
    """An append-only index segment owned by one writer."""

    def append(self, data: bytes) -> None:
        """Append whole lines; a line is either written whole or detected as torn by the reader."""

    def flush(self) -> None:
        """Make appended lines visible to readers (a no-op for files; uploads a part on S3)."""

    def sync(self) -> None:
        """Make what was appended durable (fsync, or upload the tail)."""

    def close(self) -> None:
        """Sync and release."""


@runtime_checkable
class Store(Protocol):
    """Where a run lives. Keys are ``/``-separated paths relative to the run root.

    Besides storing objects, a store declares what else it can do: ``local_root`` (its keys are
    files under a local folder: ``Run.path()`` works, readers hand DuckDB the files themselves),
    ``read`` (ranged reads), ``size``, ``list`` (keys with their sizes), ``remove_temp`` (it
    leaves temporary files when a writer dies mid-write) and ``stats`` (its own counters).
    Readers ask these, never the store's type.
    """

    url: str
    concurrency: int
    """How many puts the pipeline should keep in flight (local disk: one per core)."""
    local_root: Path | None
    """The folder whose files are the keys (``root / key``), or None for other stores."""

    def put(self, key: str, data: bytes, *, sync: bool = False) -> None:
        """Store ``data`` under ``key`` atomically: readers see all of it or nothing."""

    def get(self, key: str) -> bytes:
        """Return the bytes under ``key`` (``FileNotFoundError`` if absent)."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """The bytes ``start:end`` under ``key`` (fewer past its end; ``FileNotFoundError`` if
        absent): a ranged read, so a reader takes what a segment gained without the rest."""

    def size(self, key: str) -> int:
        """The size in bytes of ``key`` (``FileNotFoundError`` if absent)."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if no object has that key; True if this call created it.

        Atomic across processes and hosts (``O_EXCL`` on a folder, a conditional PUT with
        ``If-None-Match: *`` on S3): of several writers racing for one key, exactly one wins.
        """

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (no temporary files)."""

    def delete(self, keys: Iterable[str]) -> None:
        """Delete keys; missing keys are not an error."""

    def open_segment(self, key: str) -> Segment:
        """Open (create or continue) an append-only segment."""

    def free_bytes(self) -> int | None:
        """Free space where the images go, or None if the store has no such limit."""

    def remove_temp(self, prefix: str) -> int:
        """Delete temporary files of writers that died mid-write under ``prefix``; how many.

        Stores whose puts leave no temporary objects return 0.
        """

    def stats(self) -> dict[str, Any]:
        """The store's own counters (a spool's pending, uploaded, network errors...), or {}."""

    def close(self) -> None:
        """Release connections and file handles."""


class ObjectCapabilities:
    """The capabilities of a store of whole objects with no local folder (memory, a bucket):
    no local files, no free-space limit, no temporary objects, no counters of its own."""

    local_root: Path | None = None

    def get(self, key: str) -> bytes:  # pragma: no cover - every store defines it
        raise NotImplementedError

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """A slice of the whole object (stores with ranged requests override this)."""
        return self.get(key)[start:end]

    def size(self, key: str) -> int:
        """The object's size (stores with a cheaper way override this)."""
        return len(self.get(key))

    def free_bytes(self) -> int | None:
        """No free-space limit that we can see."""
        return None

    def remove_temp(self, prefix: str) -> int:
        """Puts are atomic: no temporary objects."""
        return 0

    def stats(self) -> dict[str, Any]:
        """No counters of its own."""
        return {}

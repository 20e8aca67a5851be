"""Which index files a read takes, and local paths for them (DuckDB reads local files).

Per writer and hour, a compacted Parquet file replaces the JSON Lines segments it was made from:
where both exist (a compaction between writing its file and removing the segments), the Parquet
file is read and the segments are not, so each record is read exactly once.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..layout import INDEX_PREFIX, hour_of_key, is_compacted, is_segment, is_summary, writer_of
from ..stores.base import Store

__all__ = ["LocalFiles", "RunFiles", "list_files"]


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """The index files of a run at one moment, grouped by hour: what a query reads.

    ``jsonl`` and ``parquet`` map an hour to its keys; segments that a Parquet file of the same
    writer and hour replaces are already left out. ``sizes``: every listed key's size;
    ``summaries``: the segment summaries listed (``records.summary``).
    """

    jsonl: dict[str, list[str]]
    parquet: dict[str, list[str]]
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    summaries: list[str] = dataclasses.field(default_factory=list)

    @property
    def hours(self) -> list[str]:
        """Every hour with index data, oldest first."""
        return sorted(set(self.jsonl) | set(self.parquet))

    def keys(self, hours: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
        """The JSON Lines and Parquet keys of these hours (all hours by default)."""
        chosen = self.hours if hours is None else list(hours)
        return (
            [k for h in chosen for k in self.jsonl.get(h, ())],
            [k for h in chosen for k in self.parquet.get(h, ())],
        )

    @property
    def writers(self) -> set[str]:
        """Every writer with a segment or a compacted hour."""
        out = {writer_of(k) for ks in self.jsonl.values() for k in ks}
        out |= {writer_of(k) for ks in self.parquet.values() for k in ks}
        return out


def list_files(store: Store) -> RunFiles:
    """List a run's index: JSON Lines segments and compacted hours (one listing)."""
    jsonl: dict[str, list[str]] = {}
    parquet: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    summaries: list[str] = []
    compacted: set[tuple[str, str]] = set()
    for info in store.list(INDEX_PREFIX):
        hour = hour_of_key(info.key)
        if hour is None:
            continue
        if is_compacted(info.key):
            parquet.setdefault(hour, []).append(info.key)
            compacted.add((hour, writer_of(info.key)))
        elif is_segment(info.key):
            jsonl.setdefault(hour, []).append(info.key)
        elif is_summary(info.key):
            summaries.append(info.key)
        else:
            continue
        sizes[info.key] = info.size
    for hour, keys in list(jsonl.items()):
        kept = sorted(k for k in keys if (hour, writer_of(k)) not in compacted)
        if kept:
            jsonl[hour] = kept
        else:
            del jsonl[hour]
    for keys in parquet.values():
        keys.sort()
    return RunFiles(jsonl, parquet, sizes, summaries)


class LocalFiles:
    """Local paths for a run's keys, for DuckDB: a snapshot of the files as they were listed.

    Stores without a local folder (``Store.local_root`` is None): each object is downloaded once
    into a temporary folder (removed by ``close()`` or when this object is collected). Local runs
    with ``pin=True`` (Linux): each file is opened when its path is first asked for and read
    through ``/proc/self/fd/N``, so a compaction or a purge that deletes it afterwards does not
    take it from a query in progress; ``close()`` releases the files. Without ``pin``, or past
    the open-file budget, the plain path.
    """

    def __init__(self, store: Store, *, pin: bool = False) -> None:
        self.store = store
        self._root = store.local_root
        self._pin = pin and self._root is not None and os.path.isdir("/proc/self/fd")
        self._lock = threading.Lock()
        self._tmp: Path | None = None
        self._fds: dict[str, int] = {}
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __enter__(self) -> LocalFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spill_dir(self) -> Path:
        """A temporary folder for DuckDB to spill large sorts to (made on first use)."""
        with self._lock:
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="imagelog-query-"))
                self._finalizer = weakref.finalize(self, _cleanup, self._tmp, self._fds)
            return self._tmp / ".spill"

    def path(self, key: str) -> str:
        """A local path with the object's bytes (``FileNotFoundError`` if it is gone)."""
        if self._root is not None:
            path = str(self._root / key)
            if not self._pin:
                return path
            with self._lock:
                fd = self._fds.get(key)
                if fd is None and len(self._fds) < _pin_budget():
                    fd = self._fds[key] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            return path if fd is None else f"/proc/self/fd/{fd}"
        tmp = self.spill_dir().parent
        with self._lock:
            dest = tmp / key
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(dest.name + ".part")
                part.write_bytes(self.store.get(key))
                part.replace(dest)
            return str(dest)

    def key_of(self, path: str) -> str:
        """The key a path of ``path()`` stands for (for messages)."""
        for key, fd in self._fds.items():
            if path == f"/proc/self/fd/{fd}":
                return key
        for base in (self._root, self._tmp):
            if base is not None and path.startswith(str(base) + "/"):
                return path[len(str(base)) + 1 :]
        return path

    def close(self) -> None:
        """Release pinned files and remove downloaded copies."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            else:
                _cleanup(None, self._fds)
            self._tmp = None
            self._finalizer = None


def _cleanup(tmp: Path | None, fds: dict[str, int]) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def _pin_budget() -> int:
    """How many files one snapshot may hold open: half the soft limit of open files."""
    import resource

    return max(64, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2)

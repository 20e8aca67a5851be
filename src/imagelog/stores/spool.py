"""The local spool: objects wait on local disk while the store is slow or down, then go up in order.

``SpoolStore(inner)`` wraps any store (S3 in practice). A ``put()`` goes straight to the inner store
while the spool is empty; when that fails (after obstore's own short retries), or while anything
is still spooled, the object is written to the spool folder instead and ``put()`` returns: the
object is *acknowledged* once it is on the store or in the spool. A background uploader sends spooled
objects in the order they were spooled, with back-off between failed rounds, many at once, but never
an index part before every object spooled ahead of it: an index line is written only after its
image's ``put()`` returned, so its image was either uploaded already or spooled ahead of the part.

Layout of one spool folder (one per store URL; several processes may share it)::

    SPOOL/<pid>-<random>/lock                  flock held by the owning process while it runs
    SPOOL/<pid>-<random>/<seq>.d               a spooled image (or any object): a JSON header line, then the bytes
    SPOOL/<pid>-<random>/<seq>.i               a spooled index part
    SPOOL/<pid>-<random>/journal/<part>.jsonl  index lines accepted but not yet put as a part

A process that opens the same URL and spool folder adopts every folder whose lock is free (its owner
exited or was killed): it turns the journals into index parts, queues everything ahead of its own
objects and deletes the folder once it is uploaded. Entries are written to a temporary name and
renamed, so a ``kill -9`` leaves whole entries only.

The spool holds at most ``max_bytes`` per process; an image that does not fit raises
``SpoolFull`` (the pipeline records it as a ``dropped`` frame, reason ``spool_full``). Index parts
always fit (they are small, and they carry the drop records).
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .._backoff import Doubling
from .._report import RateLimitedReporter
from ..errors import SpoolFull
from ..layout import INDEX_PREFIX
from .base import ObjectInfo, Store
from .parts import PartFlusher, PartSegment

__all__ = ["SpoolStore"]

logger = logging.getLogger("imagelog")

_BATCH = 64


@dataclasses.dataclass(slots=True)
class _Entry:
    path: Path
    key: str
    size: int
    index: bool


class _Folder:
    """One process's spool folder: its lock and its entries in upload order."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self.lock_fd = lock_fd
        self.entries: collections.deque[_Entry] = collections.deque()

    def release(self, *, remove: bool) -> None:
        if remove:
            shutil.rmtree(self.path, ignore_errors=True)
        if self.lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.lock_fd)
            self.lock_fd = -1


def _lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _write_entry(path: Path, key: str, data: bytes, *, sync: bool) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    header = json.dumps({"key": key}).encode("utf-8") + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in (header, data):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)


def _read_entry(path: Path) -> tuple[str, bytes]:
    blob = path.read_bytes()
    nl = blob.index(b"\n")
    key = str(json.loads(blob[:nl])["key"])
    return key, blob[nl + 1 :]


class SpoolStore:
    """A store in front of another: puts go to local disk while the inner store fails.

    Args:
        inner: the store to upload to.
        spool_dir: the spool folder for this store (shared by the processes that write to it).
        max_bytes: the most image bytes this process keeps spooled.
        index_interval: see ``PartSegment``.
        index_max_lines: see ``PartSegment``.
        drain_timeout: how long ``close()`` waits for the spool to empty while uploads succeed.
        initial_backoff: the first wait after a failed upload round (doubles each time).
        max_backoff: the longest wait between upload rounds while the store is down.
    """

    def __init__(
        self,
        inner: Store,
        *,
        spool_dir: str | os.PathLike[str],
        max_bytes: int = 2**30,
        index_interval: float = 2.0,
        index_max_lines: int = 1000,
        drain_timeout: float = 30.0,
        initial_backoff: float = 0.25,
        max_backoff: float = 10.0,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.concurrency = inner.concurrency
        self.local_root: Path | None = None  # the spool is local; the run's keys are not
        self.root = Path(spool_dir).expanduser().absolute()
        self.max_bytes = max_bytes
        self.index_interval = index_interval
        self.index_max_lines = index_max_lines
        self.drain_timeout = drain_timeout
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._cond = threading.Condition()
        self._stop = False
        self._kick = False
        self._closed = False
        self._seq = 0
        self._bytes = 0
        self._inflight = 0
        self._counts: collections.Counter[str] = collections.Counter()
        self._last_error: str | None = None
        self._last_failure = 0.0
        self._reporter = RateLimitedReporter()
        self._flusher = PartFlusher(name="imagelog-spool-parts")
        self._parts: dict[str, PartSegment] = {}
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

        self.root.mkdir(parents=True, exist_ok=True)
        # made under a hidden name, locked, then renamed: a process adopting orphans at the same
        # moment never sees (and takes or removes) a folder whose owner has not locked it yet
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        fresh = self.root / f".new-{name}"
        fresh.mkdir()
        fd = _lock(fresh / "lock")
        if fd is None:  # pragma: no cover - nobody else looks at hidden folders
            raise OSError(f"cannot lock spool folder {fresh}")
        own = self.root / name
        fresh.rename(own)
        self._own = _Folder(own, fd)
        self._journal = own / "journal"
        self._adopted: list[_Folder] = []
        self._adopt_orphans()
        if self._adopted:
            self._start()

    # -- recovery ------------------------------------------------------------------------------------
    def _adopt_orphans(self) -> None:
        """Queue the spool folders of processes that are gone (their lock is free)."""
        folders = (p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for folder in sorted(p for p in folders if p != self._own.path):
            fd = _lock(folder / "lock")
            if fd is None:
                continue  # its owner still runs (or another process adopted it)
            orphan = _Folder(folder, fd)
            try:
                self._recover(orphan)
            except OSError as exc:
                self._report("spool-recover", exc)
                orphan.release(remove=False)
                continue
            if orphan.entries:
                self._adopted.append(orphan)
                self._counts["adopted"] += len(orphan.entries)
            else:
                orphan.release(remove=True)

    def _recover(self, folder: _Folder) -> None:
        names = sorted(p.name for p in folder.path.iterdir() if p.is_file())
        last = 0
        for name in names:
            if name.startswith(".tmp-"):
                (folder.path / name).unlink(missing_ok=True)  # never acknowledged
                continue
            stem, _, kind = name.partition(".")
            if kind not in ("d", "i") or not stem.isdigit():
                continue
            path = folder.path / name
            size = path.stat().st_size
            key = self._peek_key(path)
            folder.entries.append(_Entry(path, key, size, kind == "i"))
            if kind == "d":
                self._bytes += size
            last = max(last, int(stem))
        journal = folder.path / "journal"
        if journal.is_dir():
            # lines accepted by append() but never put: each journal becomes the part it was for
            for part in sorted(journal.iterdir()):
                data = part.read_bytes()
                if data.strip():
                    last += 1
                    path = folder.path / f"{last:016d}.i"
                    _write_entry(path, f"{INDEX_PREFIX}{part.name}", data, sync=False)
                    size = path.stat().st_size
                    folder.entries.append(_Entry(path, f"{INDEX_PREFIX}{part.name}", size, True))
                    self._bytes += size
                    self._counts["journal_parts_recovered"] += 1
                part.unlink()

    @staticmethod
    def _peek_key(path: Path) -> str:
        with open(path, "rb") as fh:
            return str(json.loads(fh.readline())["key"])

    # -- the Store protocol ---------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, sync: bool = False) -> None:
        """Upload now, or spool (if the inner store fails or objects are waiting); never lose it.

        Raises:
            SpoolFull: an image that the spool has no room for (nothing was stored).
            OSError: the spool folder cannot be written.
        """
        with self._cond:
            direct = not self._own.entries and not self._inflight and not self._closed
        if direct:
            try:
                self.inner.put(key, data, sync=sync)
                return
            except Exception as exc:
                self._failed(exc)
        self._spool(key, data, index=key.startswith(INDEX_PREFIX), sync=sync)

    def _spool(self, key: str, data: bytes, *, index: bool, sync: bool) -> None:
        size = len(data)
        with self._cond:
            if not index and self._bytes + size > self.max_bytes:
                self._counts["dropped"] += 1
                self._counts["dropped_bytes"] += size
                err = SpoolFull(
                    f"spool {self._own.path} is full ({self._bytes} of {self.max_bytes} bytes) "
                    f"while {self.url} is unavailable; {key} was not stored",
                    path=str(self._own.path),
                )
                full = True
            else:
                full = False
                self._bytes += size
                self._seq += 1
                seq = self._seq
                self._inflight += 1
        if full:
            self._report("spool-full", err)
            raise err
        path = self._own.path / f"{seq:016d}.{'i' if index else 'd'}"
        try:
            _write_entry(path, key, data, sync=sync)
        except BaseException:
            with self._cond:
                self._bytes -= size
                self._inflight -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._inflight -= 1
            self._own.entries.append(_Entry(path, key, size, index))
            self._counts["spooled"] += 1
            self._counts["spooled_bytes"] += size
            self._cond.notify_all()
        self._start()

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Ask the inner store at once (a claim needs its answer now; it is never spooled)."""
        return self.inner.put_if_absent(key, data)

    def get(self, key: str) -> bytes:
        """Read from the inner store."""
        return self.inner.get(key)

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """A ranged read from the inner store."""
        return self.inner.read(key, start, end)

    def size(self, key: str) -> int:
        """The inner store's size of ``key``."""
        return self.inner.size(key)

    def exists(self, key: str) -> bool:
        """Ask the inner store; while it does not answer, whether the key waits in the spool."""
        try:
            return self.inner.exists(key)
        except FileNotFoundError:
            return False
        except Exception as exc:
            self._failed(exc)
            with self._cond:
                return any(e.key == key for f in (*self._adopted, self._own) for e in f.entries)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """List the inner store (spooled objects appear once uploaded)."""
        return self.inner.list(prefix)

    def delete(self, keys: Iterable[str]) -> None:
        """Delete from the inner store."""
        self.inner.delete(keys)

    def open_segment(self, key: str) -> PartSegment:
        """A part segment whose parts go through the spool and whose lines are journaled."""
        with self._cond:
            previous = self._parts.get(key)
        segment = PartSegment(
            self.put, key,
            interval=self.index_interval,
            max_lines=self.index_max_lines,
            journal_dir=self._journal,
            first_part=previous.next_part if previous is not None else 0,
            on_error=lambda exc: self._report("index-part", exc),
        )  # fmt: skip
        with self._cond:
            self._parts[key] = segment
        self._flusher.add(segment)
        return segment

    def free_bytes(self) -> int | None:
        """The inner store's free space (None for buckets)."""
        return self.inner.free_bytes()

    def remove_temp(self, prefix: str) -> int:
        """The inner store's temporary files (spooled files are whole before they are listed)."""
        return self.inner.remove_temp(prefix)

    # -- the uploader ---------------------------------------------------------------------------------
    def _start(self) -> None:
        with self._cond:
            if self._thread is not None or self._stop:
                return
            self._thread = threading.Thread(
                target=self._run, name="imagelog-spool-uploader", daemon=True
            )
            self._thread.start()

    def _next_batch(self) -> tuple[_Folder, builtins.list[_Entry]] | None:
        """The next entries that may go up together: one index part, or images up to the next part."""
        for folder in (*self._adopted, self._own):
            if not folder.entries:
                continue
            first = folder.entries[0]
            if first.index:
                return folder, [first]
            batch: builtins.list[_Entry] = []
            for entry in folder.entries:
                if entry.index or len(batch) >= _BATCH:
                    break
                batch.append(entry)
            return folder, batch
        return None

    def _upload(self, entry: _Entry) -> BaseException | None:
        try:
            key, data = _read_entry(entry.path)
        except FileNotFoundError:
            return None  # uploaded and removed already
        except (OSError, ValueError) as exc:
            self._report("spool-read", exc)
            self._counts["corrupt"] += 1
            return None  # a damaged entry is skipped (counted), not retried forever
        try:
            self.inner.put(key, data)
        except Exception as exc:
            return exc
        return None

    def _run(self) -> None:
        backoff = Doubling(self.initial_backoff, self.max_backoff)
        while True:
            with self._cond:
                while not self._stop and self._next_batch() is None:
                    self._cond.wait(1.0)
                if self._stop:
                    return
                folder, batch = self._next_batch() or (self._own, [])
            if backoff.failing:
                batch = batch[:1]  # after a failure, one object tells whether the store is back
            if len(batch) == 1:
                results = [self._upload(batch[0])]
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=max(1, self.concurrency),
                        thread_name_prefix="imagelog-spool-upload",
                    )
                results = list(self._pool.map(self._upload, batch))
            failed = [exc for exc in results if exc is not None]
            with self._cond:
                for entry, exc in zip(batch, results, strict=True):
                    if exc is not None:
                        continue
                    with contextlib.suppress(ValueError):
                        folder.entries.remove(entry)
                    with contextlib.suppress(OSError):
                        entry.path.unlink()
                    self._bytes -= entry.size
                    self._counts["uploaded"] += 1
                    self._counts["uploaded_bytes"] += entry.size
                if folder is not self._own and not folder.entries:
                    self._adopted.remove(folder)
                    folder.release(remove=True)
                self._cond.notify_all()
            if not failed:
                backoff.reset()
                continue
            self._failed(failed[0], n=len(failed))
            with self._cond:
                deadline = time.monotonic() + backoff.fail()
                while not self._stopping() and not self._kick and time.monotonic() < deadline:
                    self._cond.wait(deadline - time.monotonic())
                self._kick = False
                if self._stopping():
                    return

    def _stopping(self) -> bool:
        return self._stop

    def _failed(self, exc: BaseException, n: int = 1) -> None:
        with self._cond:
            self._counts["network_errors"] += n
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._last_failure = time.monotonic()
        self._report("upload", exc)

    def _report(self, kind: str, exc: BaseException) -> None:
        """Warn through the ``imagelog`` logger, at most once per kind per minute."""
        self._reporter.warn(kind, self.url, exc, f"spool {self._own.path}")

    # -- state -----------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Objects waiting in the spool (this process's and adopted ones)."""
        with self._cond:
            return sum(len(f.entries) for f in (*self._adopted, self._own)) + self._inflight

    def stats(self) -> dict[str, Any]:
        """Spool counters: pending, spooled, uploaded, dropped, network errors, adopted."""
        with self._cond:
            c = self._counts
            return {
                "spool_dir": str(self.root),
                "pending": sum(len(f.entries) for f in (*self._adopted, self._own)),
                "pending_bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "spooled": c["spooled"],
                "uploaded": c["uploaded"],
                "dropped": c["dropped"],
                "dropped_bytes": c["dropped_bytes"],
                "network_errors": c["network_errors"],
                "adopted": c["adopted"],
                "journal_parts_recovered": c["journal_parts_recovered"],
                "last_error": self._last_error,
            }

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until the spool is empty; give up early once an upload fails after the call began.

        Returns:
            True if nothing is left in the spool.
        """
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        with self._cond:
            self._kick = True  # retry now rather than after the back-off
            self._cond.notify_all()
            while True:
                if not any(f.entries for f in (*self._adopted, self._own)) and not self._inflight:
                    return True
                if self._last_failure > start:
                    return False
                if self._thread is None or self._stop:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(0.1 if remaining is None else min(0.1, remaining))

    def close(self) -> None:
        """Drain for up to ``drain_timeout`` while uploads succeed, stop, keep what is left."""
        if self._closed:
            return
        self._flusher.stop()
        for segment in list(self._parts.values()):
            segment.flush()
        self.drain(self.drain_timeout)
        with self._cond:
            self._closed = True
            self._stop = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        left = self.pending
        for folder in self._adopted:
            folder.release(remove=False)
        self._adopted = []
        journal_left = self._journal.is_dir() and any(self._journal.iterdir())
        self._own.release(remove=not self._own.entries and not journal_left)
        if left:
            try:
                logger.warning(
                    "imagelog: %d object(s) (%d bytes) of %s stay in the spool %s; the next "
                    "process that opens this URL uploads them", left, self._bytes, self.url, self.root,
                )  # fmt: skip
            except Exception:
                pass
        self.inner.close()

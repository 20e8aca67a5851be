"""A run in a local folder: files appear whole by write-to-temp-then-rename."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import KeyOutsideRun, StoreError
from .base import ObjectInfo, check_key

__all__ = ["LocalSegment", "LocalStore"]

TMP_MARK = ".tmp-"


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalSegment:
    """An index segment: one ``O_APPEND`` file descriptor, one ``write()`` per batch of lines.

    A failed write (disk full, I/O error) is cut off again with ``ftruncate`` so the segment never
    keeps half a line; where even that fails, the next write starts on a new line, so the torn
    fragment stays a line of its own that readers skip. A segment deleted under an open descriptor
    (an operator, or retention in another process) is created again and the lines written again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._torn = False
        self._size = 0
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        # A segment continued after a crash may end in a torn line: start ours on a fresh line.
        self._torn = False
        if self._size:
            with open(self.path, "rb") as fh:
                fh.seek(self._size - 1)
                self._torn = fh.read(1) != b"\n"

    def append(self, data: bytes) -> None:
        """Append lines: whole, or not at all (truncated back), or torn on a line of its own."""
        if self._fd < 0:
            raise ValueError(f"index segment {self.path} is closed")
        self._write(data)
        if os.fstat(self._fd).st_nlink == 0:  # deleted under us: those lines went nowhere
            os.close(self._fd)
            self._fd = -1
            self._open()
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self._torn:
            data = b"\n" + data
        try:
            _write_all(self._fd, data)
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                self._torn = True
            raise
        self._torn = False
        self._size += len(data)

    def flush(self) -> None:
        """Nothing to do: appended lines are visible to readers at once."""

    def sync(self) -> None:
        """fsync the segment (a closed segment has nothing left to sync)."""
        if self._fd >= 0:
            os.fsync(self._fd)

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class LocalStore:
    """A run folder on a local filesystem (the embedded default)."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        self.local_root: Path | None = self.root
        self.concurrency = max(2, os.cpu_count() or 2)
        self._root = os.fspath(self.root)
        self._dirs: set[str] = set()  # folders known to exist (as strings)
        self._lock = threading.Lock()
        self._real_root: str | None = None  # the root with symlinks resolved (on first use)
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create run folder {self.root}: {exc.strerror}", path=str(self.root)
                ) from None
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise StoreError(f"run folder {self.root} is not writable", path=str(self.root))

    def _path(self, key: str) -> Path:
        return self.root / key

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``start:end`` of a file inside the run (``path_of``; one seek and read)."""
        with open(self.path_of(key), "rb") as fh:
            fh.seek(start)
            return fh.read(-1 if end is None else max(0, end - start))

    def size(self, key: str) -> int:
        """The size of a file inside the run (``path_of``)."""
        return self.path_of(key).stat().st_size

    def path_of(self, key: str, *, follow: bool = True) -> Path:
        """The file that ``key`` names, with symlinks resolved, if it is inside the run folder.

        Raises ``KeyOutsideRun`` for a key that ``check_key`` refuses (absolute, ``..`` parts...)
        and for one whose path leads out of the run folder through a symlink. With
        ``follow=False`` only the folders are resolved (the name itself may be a symlink: what
        deleting it removes is the link).
        """
        check_key(key)
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        root = self._real_root
        if follow:
            real = os.path.realpath(os.path.join(root, key))
        else:
            parent, _, name = key.rpartition("/")
            real = os.path.join(os.path.realpath(os.path.join(root, parent)), name)
        if not real.startswith(root + os.sep):
            raise KeyOutsideRun(
                f"key {key!r} leads out of the run folder {self.root} (a symlink)", path=key
            )
        return Path(real)

    def _ensure_dir(self, parent: str) -> None:
        if parent not in self._dirs:
            try:
                os.makedirs(parent, exist_ok=True)
            except FileExistsError:  # removed again while we made it (retention pruning): retry
                os.makedirs(parent, exist_ok=True)
            with self._lock:
                self._dirs.add(parent)

    def put(self, key: str, data: bytes, *, sync: bool = False) -> None:
        """Write to ``.name.tmp-<pid>-<thread>``, optionally fsync, then rename into place."""
        # plain strings and os calls: pathlib costs tens of microseconds a frame at small sizes
        path = f"{self._root}/{check_key(key)}"
        parent, _, name = path.rpartition("/")
        tmp = f"{parent}/.{name}{TMP_MARK}{os.getpid()}-{threading.get_ident()}"
        fd = self._create(parent, tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            _write_all(fd, data)
            if sync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if sync:
            _fsync_dir(Path(parent))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the file with ``O_EXCL``; False if it exists (for small claims, not images)."""
        path = f"{self._root}/{check_key(key)}"
        try:
            fd = self._create(path.rpartition("/")[0], path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return False
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        return True

    def _create(self, parent: str, path: str, flags: int) -> int:
        """``os.open(path, flags)`` with its folder made; made again (once) if it was removed
        under us (retention, an operator)."""
        for attempt in (0, 1):
            self._ensure_dir(parent)
            try:
                return os.open(path, flags, 0o644)
            except FileNotFoundError:
                with self._lock:
                    self._dirs.discard(parent)
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, key: str) -> bytes:
        """Read a whole regular file inside the run (``path_of``; a FIFO or folder is refused)."""
        path = self.path_of(key)
        # O_NONBLOCK: a FIFO named by a hostile index line opens at once instead of blocking
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"{path} is not a regular file", path=str(path))
            return fh.read()

    def exists(self, key: str) -> bool:
        """Whether the file exists (``KeyOutsideRun`` for a key outside the run)."""
        return self.path_of(key).exists()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Walk the folder under ``prefix`` (a folder path or a file-name prefix), sorted by key;
        a symlink that points outside the run is not listed."""
        base = (
            self._path(prefix) if prefix.endswith("/") or not prefix else self._path(prefix).parent
        )
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if TMP_MARK in name:
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    st = full.lstat()
                    if stat.S_ISLNK(st.st_mode):  # listed only if it stays inside the run
                        self.path_of(key)
                        st = full.stat()
                except FileNotFoundError:  # KeyOutsideRun is one too
                    continue
                yield ObjectInfo(key, st.st_size, st.st_mtime)

    def delete(self, keys: Iterable[str]) -> None:
        """Unlink files, then remove folders left empty (``KeyOutsideRun``: nothing deleted)."""
        keys = list(keys)
        for key in keys:  # never a file that a symlinked folder leads to
            self.path_of(key, follow=False)
        parents = set()
        for key in keys:
            path = self._path(key)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            parents.add(path.parent)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            self._prune(parent)

    def remove_temp(self, prefix: str) -> int:
        """Delete temporary files (left by writers that died mid-write) under a folder prefix."""
        removed = 0
        base = self._path(prefix)
        folders = set()
        for dirpath, _, filenames in os.walk(base):
            for name in filenames:
                if TMP_MARK in name:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                        removed += 1
                    folders.add(Path(dirpath))
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            self._prune(folder)
        return removed

    def _prune(self, folder: Path) -> None:
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    if exc.errno != errno.ENOENT:
                        return
                else:
                    return
            with self._lock:
                self._dirs.discard(os.fspath(folder))
            folder = folder.parent

    def open_segment(self, key: str) -> LocalSegment:
        """Open an append-only segment file."""
        return LocalSegment(self._path(key))

    def free_bytes(self) -> int | None:
        """Free bytes on the filesystem that holds the run (for unprivileged users)."""
        try:
            return shutil.disk_usage(self.root).free
        except OSError:
            return None

    def stats(self) -> dict[str, Any]:
        """No counters of its own."""
        return {}

    def close(self) -> None:
        """Nothing to release."""

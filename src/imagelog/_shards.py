"""Shards: small images packed into per-writer, append-only tar files.

A frame whose encoded size is under ``shard_under`` is not written as a file of its own but
appended to its writer's open shard of its hour (``layout.shard_key``) as one tar member: a
512-byte header, the image file (its record inside, as a lone file has it) and padding, in one
``write()``. The member is named like the file it replaces (``<HHMMSS>_<usec>_<seq>_<writer>.<ext>``),
so ``tar x`` and WebDataset read a shard as they read any tar; the record's ``file.path`` names
the shard and ``file.offset``/``file.size`` the image's bytes in it (``read_file``: one ranged
read). A shard rolls when it reaches ``shard_bytes`` or is ``shard_age`` seconds old; each hour
has its own (a shard never spans hours), the last hour's kept open for late frames until it is
``shard_age`` old; rolling appends the tar trailer.

Local runs append to the file, and the member's index line is written only after its bytes (and
their fsync under ``fsync="all"``), so after ``kill -9`` every line names a whole member; a torn
tail is cut back by ``reindex`` (``scan``). Other stores get a shard whole, in one ``put``, when
it closes; its members' index lines are held until then.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .layout import hour_of, shard_key
from .stores.base import Store

__all__ = [
    "BLOCK",
    "TRAILER",
    "Member",
    "ShardWriter",
    "member_bytes",
    "member_name",
    "member_range",
    "read_file",
    "scan",
    "tar_member",
]

#: The tar block size.
BLOCK = 512
#: The end-of-archive marker: two zero blocks.
TRAILER = bytes(2 * BLOCK)
_ZERO = bytes(BLOCK)
_PAD = memoryview(_ZERO)
_HOUR_NS = 3600 * 10**9
_IOV_MAX = 1024


def _template() -> bytes:
    b = bytearray(BLOCK)
    b[100:108] = b"0000644\0"
    b[108:116] = b"0000000\0"
    b[116:124] = b"0000000\0"
    b[148:156] = b" " * 8  # the checksum counts its own field as spaces
    b[156] = ord("0")
    b[257:265] = b"ustar\x0000"
    return bytes(b)


_TEMPLATE = _template()
_TEMPLATE_SUM = sum(_TEMPLATE)
_ZERO_NAME = bytes(100)


def tar_header(name: str, size: int, mtime: int) -> bytes:
    """A ustar header block for a regular file (``name`` ASCII, at most 100 bytes)."""
    raw = name.encode("ascii")
    if len(raw) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name!r}")
    size_f, mtime_f = b"%011o\0" % size, b"%011o\0" % max(0, mtime)
    check = _TEMPLATE_SUM + sum(raw) + sum(size_f) + sum(mtime_f)
    return b"".join((raw, _ZERO_NAME[len(raw) :], _TEMPLATE[100:124], size_f, mtime_f,
                     b"%06o\0 " % check, _TEMPLATE[156:]))  # fmt: skip


def member_bytes(size: int) -> int:
    """The bytes an image of ``size`` bytes takes in a shard: header, data and padding."""
    return BLOCK + size + (-size % BLOCK)


def tar_member(name: str, data: bytes, mtime: int) -> bytes:
    """A whole tar member: header, data, zero padding to the block size."""
    return b"".join(_member_parts(name, data, mtime))


def _member_parts(name: str, data: bytes, mtime: int) -> tuple[bytes, bytes, memoryview]:
    """A member as its header, data and padding (written with ``writev``, never joined)."""
    return tar_header(name, len(data), mtime), data, _PAD[: -len(data) % BLOCK]


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """One whole member of a shard: its name, and where its data is (``offset``, ``size``)."""

    name: str
    offset: int
    size: int


def _parse(block: bytes) -> tuple[str, int] | None:
    """(name, size) of a header block, or None if it is not one (torn, or not a tar)."""
    try:
        want = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
        size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return None
    if want != sum(block[:148]) + 8 * 32 + sum(block[156:]):
        return None
    return block[:100].split(b"\0", 1)[0].decode("utf-8", "replace"), size


def scan(data: bytes) -> tuple[list[Member], int, bool]:
    """The whole members of a shard's bytes, the end of the last one (where a torn tail is cut),
    and whether anything follows it other than the trailer (a torn tail)."""
    members: list[Member] = []
    pos, n = 0, len(data)
    while pos + BLOCK <= n:
        block = data[pos : pos + BLOCK]
        if block == _ZERO:  # the trailer: a closed shard
            return members, pos, any(data[pos:])
        head = _parse(block)
        if head is None:
            return members, pos, True
        name, size = head
        end = pos + BLOCK + size + (-size % BLOCK)
        if end > n:
            return members, pos, True
        members.append(Member(name, pos + BLOCK, size))
        pos = end
    return members, pos, pos < n


def member_range(file: Mapping[str, Any]) -> tuple[int, int] | None:
    """A member's (offset, size) from its ``file.*``, or None if they are not byte counts (a
    damaged or hand-made index line): at least one header block in, not negative."""
    offset, size = file.get("offset"), file.get("size")
    if type(offset) is not int or type(size) is not int or offset < BLOCK or size < 0:
        return None
    return offset, size


def read_file(store: Store, file: Mapping[str, Any]) -> bytes:
    """The stored bytes of a record's ``file.*``: a whole file, or a shard member (one ranged
    read of ``file.offset`` and ``file.size``). Every reader of image bytes calls this."""
    path = str(file.get("path") or "")
    if file.get("offset") is None:
        return store.get(path)
    where = member_range(file)
    if where is None:
        raise FileNotFoundError(
            f"{path}: offset {file.get('offset')!r} and size {file.get('size')!r} name no member"
        )
    start, size = where
    data = store.read(path, start, start + size)
    if len(data) != size:  # the shard was cut short: the member's bytes are gone
        raise FileNotFoundError(
            f"{path}: the member at byte {start} is cut short ({len(data)} of {size} bytes)"
        )
    return data


def member_name(store: Store, path: str, offset: int) -> str | None:
    """The tar name of the member whose bytes start at ``offset`` of shard ``path``, or None."""
    if offset < BLOCK:
        return None
    head = _parse(store.read(path, offset - BLOCK, offset))
    return None if head is None else head[0]


@dataclasses.dataclass
class _Shard:
    key: str
    opened: float
    size: int = 0
    fd: int = -1
    buf: list[bytes] = dataclasses.field(default_factory=list)
    #: buffered stores: index lines waiting for the shard's put
    lines: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    closed: bool = False


class ShardWriter:
    """One writer's open shards (one per hour at most); thread-safe.

    ``add`` stores a member and returns its ``file.*`` fields; ``commit`` then writes its index
    line, at once for a local run, when the shard is put for other stores. ``add_many`` and
    ``commit_many`` do the same for a batch of members: one ``write()`` per shard and one
    index append (``append_lines``, when given) for them all.
    """

    def __init__(
        self,
        store: Store,
        writer: str,
        *,
        append_line: Callable[[str, int], None],
        append_lines: Callable[[Sequence[tuple[str, int]]], None] | None = None,
        max_bytes: int,
        max_age: float,
        sync: bool,
        report: Callable[[str, BaseException], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.writer = writer
        self.append_line = append_line
        self._append_lines = append_lines
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.sync = sync
        self.report = report
        self.clock = clock
        self.local = store.local_root
        self.puts = 0
        #: frames whose shard could not be stored after they were counted written
        self.lost = 0
        self._lock = threading.Lock()
        self._open: dict[str, _Shard] = {}
        self._next: dict[str, int] = {}
        self._timer: threading.Thread | None = None
        self._stop = threading.Event()

    # -- writing -----------------------------------------------------------------------------
    def add(self, created_ns: int, name: str, data: bytes) -> dict[str, Any]:
        """Append ``data`` as member ``name`` to the open shard of its hour; its ``file.*``
        fields (``path``, ``offset``, ``size``, ``member``)."""
        files, error = self.add_many([(created_ns, name, data)])
        if error is not None:
            raise error
        return files[0]

    def add_many(
        self, items: Sequence[tuple[int, str, bytes]]
    ) -> tuple[list[dict[str, Any]], BaseException | None]:
        """Append members ``(created_ns, name, data)``, in order, with one ``write()`` per shard
        they go into; the ``file.*`` fields of those stored, and the error that stopped the rest
        (a failed write leaves no part of its members: the shard is cut back)."""
        members = [_member_parts(name, data, created_ns // 1_000_000_000)
                   for created_ns, name, data in items]  # fmt: skip
        files: list[dict[str, Any]] = []
        done: list[_Shard] = []
        error: BaseException | None = None
        with self._lock:
            now = self.clock()
            chunk: list[bytes | memoryview] = []  # parts of members not yet written (to ``shard``)
            count = pending = 0  # those members, their bytes
            shard: _Shard | None = None
            checked: set[str] = set()
            for (created_ns, name, data), member in zip(items, members, strict=True):
                size = member_bytes(len(data))
                hour = hour_of(created_ns)
                target = self._open.get(hour)
                if target is not shard and chunk:
                    assert shard is not None
                    error, pending, count = self._put(shard, chunk, count, files), 0, 0
                    if error is not None:
                        break
                if target is not None and (
                    target.size + pending + size > self.max_bytes
                    or now - target.opened >= self.max_age
                    or (target.key not in checked and target.fd >= 0
                        and os.fstat(target.fd).st_nlink == 0)  # deleted under us
                ):  # fmt: skip
                    if chunk:
                        error, pending, count = self._put(target, chunk, count, files), 0, 0
                        if error is not None:
                            break
                    done.append(self._detach(hour))
                    target = None
                if target is None:  # close older hours' shards, but keep the last hour's open
                    # a while for frames that another worker still has in hand
                    last = hour_of(created_ns - _HOUR_NS)
                    done += [
                        self._detach(h)
                        for h, s in list(self._open.items())
                        if h < last or (h < hour and now - s.opened >= self.max_age)
                    ]
                    target = self._create(hour, now)
                checked.add(target.key)
                shard = target
                files.append({"path": shard.key, "offset": shard.size + pending + BLOCK,
                              "size": len(data), "member": name})  # fmt: skip
                chunk += member
                count += 1
                pending += size
            else:
                if chunk:
                    assert shard is not None
                    error = self._put(shard, chunk, count, files)
        for old in done:  # the frames just stored are not the ones a failed close loses
            self._close(old)
        return files, error

    def _put(
        self,
        shard: _Shard,
        chunk: list[bytes | memoryview],
        count: int,
        files: list[dict[str, Any]],
    ) -> BaseException | None:
        """Under the lock: write the parts in ``chunk`` (the last ``count`` members of ``files``)
        to ``shard`` in one ``writev()``; on failure cut the shard back, drop them from
        ``files`` and return the error."""
        size = sum(map(len, chunk))
        if shard.fd >= 0:
            try:
                _write_all(shard.fd, chunk)
                if self.sync:
                    os.fsync(shard.fd)
            except Exception as exc:  # maybe part written (a full disk): cut it off again
                del files[len(files) - count :]
                chunk.clear()
                try:
                    os.ftruncate(shard.fd, shard.size)
                except OSError:  # cannot: the next member starts a new shard
                    for h, s in list(self._open.items()):
                        if s is shard:
                            self._detach(h)
                    os.close(shard.fd)
                    shard.fd = -1
                return exc
        else:
            shard.buf.append(b"".join(chunk))
            self._start_timer()
        shard.size += size
        chunk.clear()
        return None

    def commit(self, file: Mapping[str, Any], line: str, created_ns: int) -> None:
        """Write the index line of a member ``add`` stored: now if its bytes are in the run
        (a local shard, or one already put), else when its shard is put."""
        self.commit_many([(file, line, created_ns)])

    def commit_many(self, items: Sequence[tuple[Mapping[str, Any], str, int]]) -> None:
        """``commit`` for several members, their lines appended together where they can be."""
        now: list[tuple[str, int]] = []
        if self.local is None:
            with self._lock:
                waiting = {s.key: s for s in self._open.values() if not s.closed}
                for file, line, created_ns in items:
                    shard = waiting.get(file["path"])
                    if shard is not None:
                        shard.lines.append((line, created_ns))
                    else:
                        now.append((line, created_ns))
        else:
            now = [(line, created_ns) for _, line, created_ns in items]
        if now:
            self._lines(now)

    def _lines(self, lines: Sequence[tuple[str, int]]) -> None:
        if self._append_lines is not None:
            self._append_lines(lines)
            return
        for line, created_ns in lines:
            self.append_line(line, created_ns)

    def undo(self, file: Mapping[str, Any]) -> None:
        """Take back the member ``add`` just stored (its index line failed), if it is still the
        last of its open shard: a failed frame leaves nothing (else it stays, an orphan)."""
        self.undo_many([file])

    def undo_many(self, files: Sequence[Mapping[str, Any]]) -> None:
        """``undo`` for members ``add_many`` stored, last first."""
        with self._lock:
            for file in reversed(files):
                start = int(file["offset"]) - BLOCK
                end = start + member_bytes(int(file["size"]))
                for shard in self._open.values():
                    if shard.key != file["path"] or shard.size != end:
                        continue
                    if shard.fd >= 0:
                        os.ftruncate(shard.fd, start)
                    else:
                        _cut(shard.buf, end - start)
                    shard.size = start

    def _create(self, hour: str, now: float) -> _Shard:
        while True:
            n = self._next.get(hour, 0)
            self._next[hour] = n + 1
            shard = _Shard(shard_key(hour, self.writer, n), now)
            if self.local is None:
                break
            path = self.local / shard.key
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                shard.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
                break
            except FileExistsError:  # left by a writer of the same id (not expected): skip
                continue
        self._open[hour] = shard
        return shard

    def _detach(self, hour: str) -> _Shard:
        shard = self._open.pop(hour)
        shard.closed = True
        return shard

    def _finish(self, shard: _Shard) -> None:
        """Close a detached shard: the trailer (and fsync) for a file; for other stores, one put
        of the whole tar, then its members' index lines."""
        if shard.fd >= 0:
            try:
                _write_all(shard.fd, [TRAILER])
                if self.sync:
                    os.fsync(shard.fd)
            finally:
                os.close(shard.fd)
                shard.fd = -1
            return
        data = b"".join([*shard.buf, TRAILER])
        shard.buf.clear()
        self.store.put(shard.key, data, sync=self.sync)
        self.puts += 1
        lines, shard.lines = shard.lines, []
        if lines:
            self._lines(lines)

    def roll(self, *, older_than: float | None = None) -> None:
        """Close the open shards (only those older than ``older_than`` seconds, if given);
        errors are reported, not raised."""
        now = self.clock()
        with self._lock:
            hours = [
                h
                for h, s in self._open.items()
                if older_than is None or now - s.opened >= older_than
            ]
            done = [self._detach(h) for h in hours]
        for shard in done:
            self._close(shard)

    def _close(self, shard: _Shard) -> None:
        """``_finish``, its error reported (with the members it lost), never raised."""
        lost = len(shard.lines)
        try:
            self._finish(shard)
        except Exception as exc:
            self.lost += lost
            self.report("shard", OSError(f"{shard.key}: {exc}; {lost} frame(s) in it lost"))

    def close(self) -> None:
        """Close every open shard and stop the timer."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join(5)
        self.roll()

    # -- age (stores without files: members wait for their shard's put) ---------------------
    def _start_timer(self) -> None:
        if self._timer is None and not self._stop.is_set():
            self._timer = threading.Thread(target=self._tick, name="imagelog-shards", daemon=True)
            self._timer.start()

    def _tick(self) -> None:
        step = max(0.05, min(1.0, self.max_age / 4))
        while not self._stop.wait(step):
            self.roll(older_than=self.max_age)


def _write_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    """Write ``parts`` one after the other, all of them (``writev``: no joined copy)."""
    views = [memoryview(p) for p in parts if len(p)]
    at = 0
    while at < len(views):
        n = os.writev(fd, views[at : at + _IOV_MAX])
        while n > 0:
            if n >= len(views[at]):
                n -= len(views[at])
                at += 1
            else:
                views[at], n = views[at][n:], 0


def _cut(buf: list[bytes], n: int) -> None:
    """Take the last ``n`` bytes off a buffered shard's chunks."""
    while n > 0:
        last = buf.pop()
        if len(last) > n:
            buf.append(last[: len(last) - n])
        n -= len(last)

"""An incremental cursor over a run's live index: what each segment gained since the last look.

Per JSON Lines segment the cursor keeps the byte offset up to the last whole line it has read.
A line still being written (no newline yet: a live writer mid-append, or a writer killed
mid-line) is not taken until its newline arrives. New segments (an hour rolling over, a new
writer, a new object-store part) come with the listing; a segment that disappears (compacted
into Parquet, or purged) is forgotten and reported, as is a compacted hour that appears; a
segment that shrank was rewritten (a repair removed torn lines) and is read on from its new end.
Reads are ranged (``Store.read``): an object-store part, which never changes, is fetched once.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

from ..stores.base import Store
from .files import RunFiles, list_files

__all__ = ["Changes", "SegmentCursor"]

#: Bytes at the start of a segment whose hash tells a rewritten segment from a grown one.
_HEAD = 256
#: Bytes read from a segment per step: bounds memory while a large run is read.
CHUNK_BYTES = 16 * 2**20


@dataclasses.dataclass
class Changes:
    """What one look at the index found (``SegmentCursor.look``)."""

    files: RunFiles
    grown: list[str]
    """Segments with bytes past their offset (``SegmentCursor.read`` them)."""
    gone: list[str]
    """Segments no longer listed (compacted or purged): forgotten."""
    new_parquet: list[str]
    """Compacted hours not seen before."""
    gone_parquet: list[str]
    """Compacted hours no longer listed (purged)."""


class SegmentCursor:
    """Offsets per segment; ``look()`` lists, ``read(key)`` yields the new whole lines.

    ``from_end=True``: the first look starts every segment at its current end (follow only what
    is written from now on).
    """

    def __init__(self, store: Store, *, from_end: bool = False) -> None:
        self.store = store
        self.offsets: dict[str, int] = {}
        self.parquet: set[str] = set()
        self._sizes: dict[str, int] = {}
        self._from_end = from_end
        self._first = True
        self._heads: dict[str, str] = {}

    def look(self) -> Changes:
        """List the index and say what changed since the last look."""
        files = list_files(self.store)
        jsonl, parquet = files.keys()
        listed = set(jsonl)
        self._sizes = {k: files.sizes.get(k, 0) for k in jsonl}
        gone = sorted(k for k in self.offsets if k not in listed)
        for key in gone:
            del self.offsets[key]
        grown = []
        for key in jsonl:
            size = self._sizes[key]
            if self._first and self._from_end:
                self.offsets[key] = self._line_end(key, size)
                continue
            start = self.offsets.setdefault(key, 0)
            if size < start:  # rewritten (repair): go on from its new end
                self.offsets[key] = size
            elif size > start:
                grown.append(key)
        now = set(parquet)
        new_parquet = sorted(now - self.parquet)
        gone_parquet = sorted(self.parquet - now)
        if self._first and self._from_end:
            new_parquet = []
        self.parquet = now
        self._first = False
        return Changes(files, grown, gone, new_parquet, gone_parquet)

    def _line_end(self, key: str, size: int) -> int:
        """Where the last whole line of ``key`` ends (a line being written is read later)."""
        start = max(0, size - 2**16)
        try:
            tail = self.store.read(key, start, size)
        except FileNotFoundError:
            return size
        cut = tail.rfind(b"\n") + 1
        return start + cut if cut or start == 0 else size

    def read(self, key: str, *, chunk: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
        """``(offset, whole lines)`` of what ``key`` gained, in chunks of about ``chunk`` bytes
        (a longer line comes whole); the offset moves past each chunk as it is taken."""
        size = self._sizes.get(key)
        while True:
            start = self.offsets.get(key, 0)
            if size is not None and start >= size:
                return
            end = start + chunk if size is None else min(size, start + chunk)
            try:
                data = self.store.read(key, start, end)
            except FileNotFoundError:
                self.offsets.pop(key, None)
                return
            cut = data.rfind(b"\n") + 1
            while cut == 0 and len(data) == end - start and (size is None or end < size):
                end = end + chunk if size is None else min(size, end + chunk)  # a long line
                more = self.store.read(key, start + len(data), end)
                if not more:
                    break
                data += more
                cut = data.rfind(b"\n") + 1
            if cut == 0:
                return  # only a line still being written
            self.offsets[key] = start + cut
            yield start, data[:cut]
            if len(data) < end - start:
                return

    def state(self, parquet: set[str] | None = None) -> dict[str, Any]:
        """Where the cursor stands (JSON-able), to ``restore`` in a later session; each segment
        with a fingerprint of its first bytes read, so one rewritten meanwhile is read again.
        ``parquet``: the compacted hours taken so far (default: every one seen)."""
        heads = {}
        for key, offset in self.offsets.items():
            head = self._heads.get(key)
            if head is None:
                head = self._head(key, offset)
                if offset >= _HEAD:  # those bytes never change in an append-only segment
                    self._heads[key] = head
            heads[key] = head
        taken = self.parquet if parquet is None else parquet
        return {"offsets": dict(self.offsets), "parquet": sorted(taken), "heads": heads}

    def restore(self, state: dict[str, Any]) -> list[str]:
        """Go on from a saved ``state``; returns the segments that changed beyond appends since
        (shorter, or other first bytes): those are read again from the start."""
        offsets = {str(k): int(v) for k, v in (state.get("offsets") or {}).items()}
        heads = {str(k): str(v) for k, v in (state.get("heads") or {}).items()}
        changed = []
        for key, offset in offsets.items():
            try:
                size = self.store.size(key)
            except OSError:
                size = None  # gone: the next look reports it
            if size is not None and (size < offset or self._head(key, offset) != heads.get(key)):
                changed.append(key)
                offset = 0
            self.offsets[key] = offset
        self.parquet = {str(k) for k in state.get("parquet") or ()}
        self._first = False
        return changed

    def _head(self, key: str, offset: int) -> str:
        try:
            data = self.store.read(key, 0, min(offset, _HEAD))
        except OSError:
            return ""
        return hashlib.sha256(data).hexdigest()[:16]

    def line(self, key: str, offset: int, length: int) -> bytes:
        """The bytes of one line read before (by its offset and length)."""
        return self.store.read(key, offset, offset + length)

    def lines(self) -> Iterator[bytes]:
        """Every new whole line of every segment since the last look (non-empty ones)."""
        for key in self.look().grown:
            for _, data in self.read(key):
                yield from (line for line in data.split(b"\n") if line.strip())

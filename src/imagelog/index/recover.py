"""Recovery of the index itself: repair torn lines, and which writers are still alive.

Torn lines. A segment line is torn when a writer died (``kill -9``, power loss) or its disk
failed in the middle of an append. Readers skip such lines with a warning. Repair moves them to
``quarantine/<segment>.<n>.torn`` and rewrites the segment without them; it only ever touches
segments of writers that are gone (the process id in the writer id is not alive on this host),
because a live writer still appends to its segment. ``imagelog.open()`` repairs torn *last*
lines in the background; ``imagelog verify --repair`` repairs every torn line.

The run audit (``verify``) and the rebuild from images (``reindex``) live in ``imagelog.audit``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable

from ..layout import (
    QUARANTINE_PREFIX,
    quarantine_key,
    segment_name,
    writer_of,
    writer_pid,
)
from ..record import HOSTNAME
from ..stores.base import Store
from .reader import iter_segment_lines, segment_keys

__all__ = [
    "RepairedSegment",
    "live_writers",
    "pid_alive",
    "repair",
    "repair_segment",
    "writer_alive",
]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def writer_alive(writer: str, own: Iterable[str] = ()) -> bool:
    """Whether a writer (``<hex>-<pid>``) may still append: its process lives (here: it is open)."""
    pid = writer_pid(writer)
    if pid is None:
        return False
    if pid == os.getpid():
        return writer in set(own)
    return pid_alive(pid)


# -- torn lines ---------------------------------------------------------------------------------
@dataclasses.dataclass
class RepairedSegment:
    """A segment rewritten without its torn lines, and where those went."""

    key: str
    lines: int
    bytes: int
    quarantine: str


def _tail_torn(store: Store, key: str) -> bool:
    if store.local_root is not None:  # one byte of the file, not the whole segment
        path = store.local_root / key
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() == 0:
                    return False
                fh.seek(-1, os.SEEK_END)
                return fh.read(1) != b"\n"
        except OSError:
            return False
    data = store.get(key)
    return bool(data) and not data.endswith(b"\n")


def _other_host(data: bytes) -> bool:
    for _, _, rec in iter_segment_lines(data):
        if rec is not None:
            host = (rec.get("host") or {}).get("name")
            return host is not None and host != HOSTNAME
    return False


def repair_segment(store: Store, key: str) -> RepairedSegment | None:
    """Move a segment's torn or invalid lines to ``quarantine/`` and rewrite it without them.

    Only for segments no live writer appends to. Returns None if the segment is whole.
    """
    data = store.get(key)
    good: list[bytes] = []
    bad: list[bytes] = []
    for _, raw, rec in iter_segment_lines(data):
        (good if rec is not None else bad).append(raw + b"\n")
    if not bad and (not data or data.endswith(b"\n")):
        return None
    n = sum(
        1 for o in store.list(f"{QUARANTINE_PREFIX}{segment_name(key)}.") if o.key.endswith(".torn")
    )
    quarantine = quarantine_key(key, n + 1)
    store.put(quarantine, b"".join(bad))
    store.put(key, b"".join(good))
    return RepairedSegment(key, len(bad), sum(len(b) for b in bad), quarantine)


def repair(
    store: Store,
    *,
    tails_only: bool = False,
    is_live: Callable[[str], bool] = writer_alive,
) -> list[RepairedSegment]:
    """Repair torn lines in every segment whose writer is gone (``tails_only``: torn last lines).

    ``imagelog.open()`` runs this with ``tails_only=True`` in the background; it reads one byte
    of each segment (local folders), so its cost grows with the number of segments, not lines.
    """
    done: list[RepairedSegment] = []
    for key in segment_keys(store):
        if tails_only and not _tail_torn(store, key):
            continue
        if is_live(writer_of(key)):
            continue
        data = store.get(key)
        if _other_host(data):
            continue
        fixed = repair_segment(store, key)
        if fixed is not None:
            done.append(fixed)
    return done


def live_writers(store: Store, own: Iterable[str] = ()) -> list[str]:
    """Writers with segments in the run whose processes still run on this host."""
    return sorted({w for w in map(writer_of, segment_keys(store)) if writer_alive(w, own)})

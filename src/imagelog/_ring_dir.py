"""The on-disk ring (``ring_dir=``): each held frame also lies in a file, so a crash loses nothing
that a later writer cannot still save.

Layout: ``<ring_dir>/<writer>/<seq>.ring``, one file per held frame: a JSON header line (the
record's caller-thread half, codec, frame fields, times) then the encoded bytes. A file is written
(temp + rename) when its frame enters the ring and removed when the frame expires or is written
by a trigger. A writer that opens with a ``ring_dir`` adopts the files of dead writers (moved
into its own folder) into its ring, where the usual bounds and triggers apply. No fsync: this
survives the process (``kill -9``), not the machine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["RingDir"]

SUFFIX = ".ring"


class RingDir:
    """One writer's folder of held frames, and the adoption of dead writers' folders."""

    def __init__(self, root: str | os.PathLike[str], writer: str) -> None:
        self.root = Path(root)
        self.dir = self.root / writer
        self.dir.mkdir(parents=True, exist_ok=True)

    def save(self, seq: int, header: dict[str, Any], data: bytes) -> str:
        """Write one held frame; return its path."""
        path = self.dir / f"{seq:012d}{SUFFIX}"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(header) + b"\n")
            f.write(data)
        os.replace(tmp, path)
        return str(path)

    @staticmethod
    def remove(path: str) -> None:
        """Forget a held frame (expired or written)."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)

    def close(self) -> None:
        """Remove this writer's folder if nothing is left in it."""
        for tmp in self.dir.glob("*.tmp"):
            self.remove(str(tmp))
        with contextlib.suppress(OSError):
            self.dir.rmdir()

    def adopt(
        self, is_live: Callable[[str], bool]
    ) -> Iterator[tuple[dict[str, Any], bytes, str, int]]:
        """Move the frames of dead writers into this writer's folder; yield (header, bytes,
        new path, file mtime ns), oldest writer's first, each in seq order. Unreadable files are
        skipped (left where they are)."""
        for old in sorted(p for p in self.root.iterdir() if p.is_dir() and p != self.dir):
            if is_live(old.name):
                continue
            for tmp in old.glob("*.tmp"):  # a frame torn by the crash: never in the ring
                self.remove(str(tmp))
            for path in sorted(old.glob(f"*{SUFFIX}")):
                try:
                    raw = path.read_bytes()
                    head, _, data = raw.partition(b"\n")
                    header = orjson.loads(head)
                    mtime = path.stat().st_mtime_ns
                except (OSError, ValueError):
                    continue
                new = self.dir / f"{old.name}_{path.name}"
                os.replace(path, new)
                yield header, data, str(new), mtime
            with contextlib.suppress(OSError):
                old.rmdir()

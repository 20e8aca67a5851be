"""Triggers left as files, for ring writers in other processes (``imagelog trigger``).

The protocol, in the run (a local folder or ``s3://``):

- ``triggers/<writer>.alive``: a ring writer announces itself (host, pid, ``ring_dir``) when it
  opens and every ``BEAT_S`` seconds after (rewrites the file), and removes it when it closes.
  A writer of this host is live while its process runs; one of another host while its
  announcement is younger than ``ALIVE_S``.
- ``triggers/<id>.json``: a trigger (``record.trigger_spec``). It is left while some ring writer
  is live, or when a dead writer of this host left held frames in its ``ring_dir`` (the next
  writer opened with that ``ring_dir`` adopts them and applies the trigger); otherwise it would
  save nothing (writers skip triggers left before they opened, or before the frames they
  adopted) and ``imagelog trigger`` refuses it. Each writer polls every second and applies each
  trigger once.
- Clean-up: a writer removes the trigger files it has handled, and announcements, once they are
  older than ``KEEP_S`` (every live writer has polled a trigger many times by then; an
  announcement that old is a dead writer's).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .layout import TRIGGERS_PREFIX, alive_key, trigger_key
from .record import dumps
from .stores.base import Store

__all__ = [
    "ALIVE_S",
    "BEAT_S",
    "KEEP_S",
    "Announcement",
    "TriggerBoard",
    "announcements",
    "leave_trigger",
    "live_ring_writers",
]

#: How often (seconds) a ring writer rewrites its announcement.
BEAT_S = 10.0
#: An announcement younger than this (seconds) names a live writer.
ALIVE_S = 60.0
#: Trigger files and announcements older than this (seconds) are removed by the writers.
KEEP_S = 600.0

_ALIVE_SUFFIX = ".alive"
_HOST = socket.gethostname()


@dataclasses.dataclass(frozen=True)
class Announcement:
    """A ring writer's ``triggers/<writer>.alive``: who, where, and its ``ring_dir``."""

    writer: str
    host: str | None
    pid: int | None
    ring_dir: str | None
    mtime: float

    def live(self, now: float) -> bool:
        """Whether the writer is live: on this host, its process runs; elsewhere, it announced
        itself in the last ``ALIVE_S`` seconds."""
        from ._lifecycle import open_writers
        from .index.recover import writer_alive

        if self.host == _HOST:
            return writer_alive(self.writer, open_writers())
        return now - self.mtime < ALIVE_S

    def held_frames(self) -> bool:
        """Whether this (dead) writer left held frames in its ``ring_dir`` on this host, which
        the next writer opened with that ``ring_dir`` adopts (and applies triggers to)."""
        if self.host != _HOST or not self.ring_dir:
            return False
        folder = Path(self.ring_dir) / self.writer
        return folder.is_dir() and any(folder.glob("*.ring"))


def announcements(store: Store) -> list[Announcement]:
    """The ring writers' announcements in a run (unreadable ones skipped)."""
    out = []
    for info in store.list(TRIGGERS_PREFIX):
        if not info.key.endswith(_ALIVE_SUFFIX):
            continue
        writer = info.key.rsplit("/", 1)[-1].removesuffix(_ALIVE_SUFFIX)
        try:
            body = json.loads(store.get(info.key))
            host, pid, ring_dir = body.get("host"), body.get("pid"), body.get("ring_dir")
        except (OSError, ValueError, AttributeError):
            continue
        out.append(Announcement(writer, host, pid, ring_dir, info.mtime))
    return out


def live_ring_writers(store: Store, *, now: float | None = None) -> list[str]:
    """The ring writers of a run that are live now (see ``Announcement.live``)."""
    now = time.time() if now is None else now
    return sorted(a.writer for a in announcements(store) if a.live(now))


def leave_trigger(store: Store, spec: dict[str, Any]) -> None:
    """Leave a trigger (``record.trigger_spec``) for the run's ring writers."""
    store.put(trigger_key(str(spec["id"])), (dumps(spec) + "\n").encode("utf-8"))


class TriggerBoard:
    """A ring writer's side of the protocol: its announcement, the triggers it has not applied
    yet, and the clean-up of old files."""

    def __init__(
        self,
        store: Store,
        writer: str,
        *,
        ring_dir: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.writer = writer
        self.ring_dir = None if ring_dir is None else os.path.abspath(ring_dir)
        self.wall = wall
        self._seen: set[str] = set()
        self._last_beat: float | None = None

    def announce(self) -> None:
        """Write (or rewrite) this writer's announcement."""
        body = {"writer": self.writer, "host": _HOST, "pid": os.getpid(), "at": self.wall(),
                "ring_dir": self.ring_dir}  # fmt: skip
        self.store.put(alive_key(self.writer), (dumps(body) + "\n").encode("utf-8"))
        self._last_beat = self.wall()

    def withdraw(self) -> None:
        """Remove this writer's announcement (on close)."""
        self.store.delete([alive_key(self.writer)])

    def poll(
        self, report: Callable[[str, BaseException], None]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Announce when due, remove old files this writer has handled, and return the triggers
        not seen before as (id, spec); a file that is not a trigger is reported once and
        skipped."""
        now = self.wall()
        if self._last_beat is None or now - self._last_beat >= BEAT_S:
            self.announce()
        new: list[tuple[str, dict[str, Any]]] = []
        old: list[str] = []
        listed: set[str] = set()
        for info in self.store.list(TRIGGERS_PREFIX):
            aged = now - info.mtime > KEEP_S
            if not info.key.endswith(".json"):
                if aged and info.key != alive_key(self.writer):
                    old.append(info.key)  # a dead writer's announcement
                continue
            tid = info.key.rsplit("/", 1)[-1].removesuffix(".json")
            if tid in self._seen:
                if aged:
                    old.append(info.key)  # handled here, and old: every live writer has too
                else:
                    listed.add(tid)
                continue
            listed.add(tid)
            self._seen.add(tid)
            try:
                spec = json.loads(self.store.get(info.key))
                if not isinstance(spec, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                report("trigger-file", ValueError(f"{info.key}: {exc}"))
                continue
            new.append((tid, spec))
        if old:
            try:
                self.store.delete(old)
            except OSError as exc:  # another writer removed them first, or storage refuses
                report("trigger-file", exc)
        self._seen &= listed  # forget what is gone
        return new

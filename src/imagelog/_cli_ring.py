"""``imagelog trigger``: save what the ring writers of a run hold, from outside their processes.

The verb leaves ``triggers/<id>.json`` in the run (a local folder or ``s3://``); every writer
opened with a ring polls ``triggers/`` from its maintenance thread (every second) and applies
each trigger once, as if its process had called ``ImageLog.trigger()``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .ids import uuid7
from .layout import trigger_key
from .record import dumps, iso_utc, parse_time_ns
from .settings import parse_duration
from .stores import make_store

__all__ = ["add_ring_commands", "write_trigger"]


def write_trigger(
    run: str,
    reason: str,
    *,
    before: float | None = None,
    after: float = 0.0,
    sources: list[str] | None = None,
    at_ns: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Leave a trigger for the run's ring writers; return its id.

    ``before``/``after`` in seconds (``before`` None: all that the rings hold); ``at_ns``: the
    moment on the writers' capture axis (default: now).
    """
    if not reason:
        raise ValueError("a trigger needs a non-empty --reason")
    now = time.time_ns()
    at = now if at_ns is None else at_ns
    tid = uuid7(now)
    spec = {
        "id": tid,
        "reason": reason,
        "at": iso_utc(at),
        "at_ns": at,
        "before_ns": None if before is None else int(before * 1e9),
        "after_ns": int(after * 1e9),
        "sources": sources,
        "created": iso_utc(now),
        "created_ns": now,
    }
    store = make_store(run, create=False, storage_options=storage_options or {})
    try:
        store.put(trigger_key(tid), (dumps(spec) + "\n").encode("utf-8"))
    finally:
        store.close()
    return tid


def cmd_trigger(args: argparse.Namespace) -> int:
    """``imagelog trigger RUN --reason R``: print the trigger's id."""
    at = None
    if args.at is not None:
        try:
            at = parse_time_ns(float(args.at), name="--at")
        except ValueError:
            import datetime as dt

            at = parse_time_ns(dt.datetime.fromisoformat(args.at), name="--at")
    tid = write_trigger(
        args.run, args.reason,
        before=None if args.before is None else parse_duration(args.before, name="--before"),
        after=parse_duration(args.after, name="--after"),
        sources=args.source or None, at_ns=at,
    )  # fmt: skip
    print(tid)
    sys.stdout.flush()
    return 0


def add_ring_commands(sub: Any) -> None:
    """Add ``trigger`` to the CLI's subparsers."""
    tr = sub.add_parser(
        "trigger", help="save what the run's ring writers hold (polled by them every second)"
    )
    tr.add_argument("run", help="the run folder or s3:// URL")
    tr.add_argument("--reason", required=True, help="why; the saved records' event.reason")
    tr.add_argument("--before", help="how far back, e.g. 10s (default: all the rings hold)")
    tr.add_argument("--after", default="0s", help="how long to keep recording after (0s)")
    tr.add_argument("--source", action="append", help="only this source (repeatable)")
    tr.add_argument("--at", help="the moment (Unix seconds or ISO 8601; default: now)")
    tr.set_defaults(func=cmd_trigger)

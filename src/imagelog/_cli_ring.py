"""``imagelog trigger``: save what the ring writers of a run hold, from outside their processes.

The verb leaves ``triggers/<id>.json`` in the run (a local folder or ``s3://``) when a ring writer
is live there; every writer opened with a ring polls ``triggers/`` from its maintenance thread
(every second) and applies each trigger once, as if its process had called
``ImageLog.trigger()`` (``_trigger_files`` is the protocol).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import Any

from ._trigger_files import announcements, leave_trigger
from .cli import add_run
from .errors import ImageLogError
from .ids import uuid7
from .inputs import parse_time_ns, text_of
from .record import trigger_spec
from .settings import parse_duration
from .stores.base import Store

__all__ = ["NoRingWriter", "add_ring_commands", "write_trigger"]


class NoRingWriter(ImageLogError, RuntimeError):
    """``imagelog trigger`` on a run where no ring writer is live: nothing would apply it."""


def write_trigger(
    run: str,
    reason: str,
    *,
    before: float | None = None,
    after: float = 0.0,
    sources: list[str] | None = None,
    at_ns: int | None = None,
    storage_options: dict[str, Any] | None = None,
    require_writer: bool = True,
    notes: list[str] | None = None,
) -> str:
    """Leave a trigger for the run's ring writers; return its id.

    ``before``/``after`` in seconds (``before`` None: all that the rings hold); ``at_ns``: the
    moment on the writers' capture axis (default: now).

    Raises:
        imagelog.RunNotFound: ``run`` holds no run (nothing is created).
        NoRingWriter: no ring writer is live in the run, and no dead one of this host left
            held frames in its ``ring_dir`` for the next writer to adopt (unless
            ``require_writer=False``): writers skip triggers left before they opened, so it
            would save nothing. When it is left for such frames, ``notes`` gets a line saying so.
        ValueError: an empty reason.
    """
    from .run import read

    if not isinstance(reason, str) or not reason:  # type: ignore[redundant-expr,unused-ignore]
        raise ValueError("a trigger needs a non-empty --reason")
    text_of(reason, "--reason")
    for name in sources or ():
        if not name:
            raise ValueError("--source must name a source (it was empty)")
        text_of(name, "--source")
    store = read(run, storage_options=storage_options).store
    try:
        if require_writer:
            _check_writers(store, notes)
        now = time.time_ns()
        tid = uuid7(now)
        spec = trigger_spec(
            tid=tid, reason=reason, now_ns=now, at_ns=now if at_ns is None else at_ns,
            before_ns=None if before is None else int(before * 1e9), after_ns=int(after * 1e9),
            sources=sources,
        )  # fmt: skip
        leave_trigger(store, spec)
    finally:
        store.close()
    return tid


def _check_writers(store: Store, notes: list[str] | None) -> None:
    """Refuse a trigger that no writer would apply (see ``write_trigger``)."""
    found = announcements(store)
    now = time.time()
    if any(a.live(now) for a in found):
        return
    waiting = [a for a in found if a.held_frames()]
    if not waiting:
        raise NoRingWriter(
            f"no ring writer is live in {store.url}: nothing would apply the trigger, so none "
            "was left; open the run with imagelog.open(path, ring='30s') first"
        )
    if notes is not None:
        notes.append(
            f"no ring writer is live; the trigger waits for the next writer opened with "
            f"ring_dir={waiting[0].ring_dir}, which adopts the frames "
            f"{', '.join(a.writer for a in waiting)} held"
        )


def _at_ns(text: str) -> int:
    """``--at``: Unix seconds or ISO 8601 (without a zone: local time, as ``captured_at``)."""
    try:
        number: float = int(text)
    except ValueError:
        pass
    else:
        return parse_time_ns(number, name="--at")
    try:
        number = float(text)
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"--at {text!r} is neither Unix seconds nor an ISO 8601 time "
                "(e.g. 2026-11-24T16:00:00Z)"
            ) from None
        return parse_time_ns(when, name="--at")
    return parse_time_ns(number, name="--at")


def cmd_trigger(args: argparse.Namespace) -> int:
    """``imagelog trigger RUN --reason R``: print the trigger's id."""
    at = None if args.at is None else _at_ns(args.at)
    notes: list[str] = []
    tid = write_trigger(
        args.run, args.reason,
        before=None if args.before is None else parse_duration(args.before, name="--before"),
        after=parse_duration(args.after, name="--after"),
        sources=args.source or None, at_ns=at, notes=notes,
    )  # fmt: skip
    for note in notes:
        print(f"imagelog trigger: {note}", file=sys.stderr)
    print(tid)
    sys.stdout.flush()
    return 0


def add_ring_commands(sub: Any) -> None:
    """Add ``trigger`` to the CLI's subparsers."""
    tr = sub.add_parser(
        "trigger",
        help="save what the run's live ring writers hold (polled by them every second); "
        "fails when no ring writer is live",
    )
    add_run(tr)
    tr.add_argument("--reason", required=True, help="why; the saved records' event.reason")
    tr.add_argument("--before", help="how far back, e.g. 10s (default: all the rings hold)")
    tr.add_argument("--after", default="0s", help="how long to keep recording after (0s)")
    tr.add_argument("--source", action="append", help="only this source (repeatable)")
    tr.add_argument("--at", help="the moment (Unix seconds or ISO 8601; default: now)")
    tr.set_defaults(func=cmd_trigger)

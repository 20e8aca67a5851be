"""Process-wide lifecycle: the weak registry of open logs, the ``atexit`` drain and fork hooks."""

from __future__ import annotations

import atexit
import enum
import logging
import os
import threading
import weakref
from typing import Protocol

from . import ids

__all__ = ["LogState", "open_writers", "register", "unregister"]

logger = logging.getLogger("imagelog")


class LogState(enum.StrEnum):
    """Where an ``ImageLog`` is in its life (httpx's ``ClientState``), and what each state allows.

    ``OPEN -> CLOSING -> CLOSED``, one way; a log opens in its constructor, so there is no
    unopened state.

    ============  =====================  ===================  ===========================
    state         ``log()``              ``flush()``          ``close()``
    ============  =====================  ===================  ===========================
    OPEN          queues the frame       waits for the queue  drains, moves to CLOSING
    CLOSING       ``RuntimeError``       waits for the queue  waits for the first close
    CLOSED        ``RuntimeError``       returns at once      nothing (idempotent)
    ============  =====================  ===================  ===========================
    """

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class _Drainable(Protocol):
    def _close_at_exit(self) -> None: ...
    def _after_fork_child(self) -> None: ...


_open: weakref.WeakSet[_Drainable] = weakref.WeakSet()
_lock = threading.Lock()


def register(log: _Drainable) -> None:
    """Track an open log so that exit drains it and a fork resets it."""
    with _lock:
        _open.add(log)


def unregister(log: _Drainable) -> None:
    """Forget a closed log."""
    with _lock:
        _open.discard(log)


def open_writers() -> set[str]:
    """Writer ids of the logs open in this process (their segments are live)."""
    with _lock:
        return {str(getattr(log, "writer", "")) for log in _open}


def _drain_all() -> None:
    for log in list(_open):
        try:
            log._close_at_exit()
        except (OSError, ValueError, RuntimeError) as exc:
            try:
                logger.warning("imagelog: could not drain %r at exit: %s", log, exc)
            except Exception:
                pass


def _after_fork_child() -> None:
    global _lock
    _lock = threading.Lock()
    ids.reseed()
    for log in list(_open):
        log._after_fork_child()


atexit.register(_drain_all)
os.register_at_fork(after_in_child=_after_fork_child)

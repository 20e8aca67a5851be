"""Lower CPU priority for imagelog's background threads, so the caller's threads run first."""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["lower_priority"]


def lower_priority(nice: int) -> None:
    """Give the calling thread a lower CPU priority than the caller's threads (Linux: per thread).

    When the encoders saturate the cores, the scheduler then runs the caller's thread first, so
    ``log()`` keeps its latency and the background threads use what is left. Elsewhere (macOS,
    Windows, or where it is not permitted) it does nothing.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):  # elsewhere a thread id is no pid
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError:
        pass

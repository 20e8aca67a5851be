"""The lease that lets one tier pass at a time run on a run (``tiers.lock``): taken, renewed,
released; a lease expired, or of a dead process on this host, is stale."""

from __future__ import annotations

import os
import time
from typing import Any

from ..record import dumps
from ..stores.base import Store

#: The lease one pass holds on a run (``tiers.lock``) and how long it lasts unrenewed; a lease
#: of a dead process on this host is stale at once.
LOCK_KEY = "tiers.lock"
LEASE_S = 600.0
#: How long a pass on an object store waits after writing its lease before reading it back
#: (two passes that wrote at once: the last one written wins, the other backs off).
LEASE_SETTLE_S = 0.5


def _lease(owner: str) -> bytes:
    from ..record import HOSTNAME

    data = {"owner": owner, "host": HOSTNAME, "pid": os.getpid(), "expires": time.time() + LEASE_S}
    return (dumps(data) + "\n").encode("utf-8")


def _holder(store: Store) -> dict[str, Any] | None:
    """The live lease on the run, or None (absent, unreadable, expired, or its process gone)."""
    import json

    from ..index.recover import pid_alive
    from ..record import HOSTNAME

    try:
        cur = json.loads(store.get(LOCK_KEY))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(cur, dict) or float(cur.get("expires") or 0) < time.time():
        return None
    pid = cur.get("pid")
    if cur.get("host") == HOSTNAME and isinstance(pid, int) and not pid_alive(pid):
        return None
    return cur


def _acquire(store: Store, owner: str) -> bool:
    """Take the run's lease; False if another live pass holds it."""
    held = _holder(store)
    if held is not None and held.get("owner") != owner:
        return False
    root = store.local_root
    if root is not None:  # a local folder: create it exclusively, replacing a stale one
        path = root / LOCK_KEY
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if _holder(store) is not None:
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "wb") as fh:
                fh.write(_lease(owner))
            return True
        return False
    store.put(LOCK_KEY, _lease(owner))
    time.sleep(LEASE_SETTLE_S)
    held = _holder(store)
    return held is not None and held.get("owner") == owner


def _renew(store: Store, owner: str) -> None:
    held = _holder(store)
    if held is not None and held.get("owner") == owner:
        store.put(LOCK_KEY, _lease(owner))


def _release(store: Store, owner: str) -> None:
    try:
        held = _holder(store)
        if held is not None and held.get("owner") == owner:
            store.delete([LOCK_KEY])
    except OSError:
        pass  # it expires

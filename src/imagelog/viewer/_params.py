"""The viewer's query parameters: each route's allowed names, filters, times and numbers
checked (``_BadRequest``: a 400 naming the problem); and the listening socket."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import socket
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from .index import Filters

#: Largest offset or total a page asks for (DuckDB's BIGINT is the limit).
MAX_ROWS = 2**62
#: Query parameters every filtered route takes (besides the token).
FILTER_PARAMS = ("source", "label", "meta", "level", "q", "since", "until")


class _BadRequest(ValueError):
    pass


def _params(request: Request, names: Iterable[str]) -> Any:
    """The query parameters, after refusing any the route does not take (a 400)."""
    q = request.query_params
    unknown = sorted(set(q.keys()) - {"token", *names})
    if unknown:
        raise _BadRequest(f"unknown parameter {unknown[0]!r} (this route takes: "
                          f"{', '.join(sorted(names)) or 'none'})")  # fmt: skip
    return q


def _filters(request: Request, extra: Iterable[str]) -> Filters:
    """The page's filters from the query string, times checked (a 400 for a bad one)."""
    q = _params(request, (*FILTER_PARAMS, *extra))
    f = Filters.from_query(q)
    return dataclasses.replace(f, since=_time(q, "since"), until=_time(q, "until"))


def _time(q: Any, name: str) -> str | None:
    """A time parameter as ISO 8601 with its zone (one without a zone is UTC), or None."""
    raw = (q.get(name) or "").strip()
    if not raw:
        return None
    try:
        t = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise _BadRequest(
            f"{name} must be a time such as 2026-11-30T01:43:00Z, got {raw[:60]!r}"
        ) from None
    return (t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)).isoformat()


def _whole(q: Any, name: str, default: int | None, lo: int, hi: int) -> Any:
    """A whole-number parameter within ``lo..hi`` (a 400 otherwise), or ``default``."""
    raw = (q.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be a whole number, got {raw[:60]!r}") from None
    if not lo <= value <= hi:
        raise _BadRequest(f"{name} must be from {lo} to {hi}, got {value}")
    return value


def _number(q: Any, name: str) -> float | None:
    """A finite number parameter (a 400 otherwise), or None."""
    raw = (q.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _BadRequest(f"{name} must be a finite number, got {raw[:60]!r}")
    return value


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``OSError`` with a one-line reason)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock

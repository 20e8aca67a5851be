"""What every record shares: the schema version, the host, the order of a record's top-level
keys, times as records write them (``iso_utc``) and the one serialisation (``dumps``,
``ascii_json``). ``imagelog.record`` re-exports them."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import re
import socket
from collections.abc import Mapping
from typing import Any

import orjson

SCHEMA_VERSION = 1
HOSTNAME = socket.gethostname()
#: The top-level keys of a record, in the order they are written.
RECORD_ORDER = ("@timestamp", "event", "log", "message", "error", "file", "image", "labels", "meta",
                "exif", "host", "process", "imagelog")  # fmt: skip


def iso_utc(ns: int) -> str:
    """Format Unix nanoseconds as ISO 8601 UTC with microseconds, as ECS ``@timestamp`` wants.

    >>> iso_utc(1_764_000_000_123_456_789)
    '2025-11-24T16:00:00.123456Z'
    """
    sec, rem = divmod(ns, 1_000_000_000)
    prefix = _second_prefix(sec)
    return f"{prefix}.{rem // 1000:06d}Z"


@functools.lru_cache(maxsize=64)
def _second_prefix(sec: int) -> str:
    return _dt.datetime.fromtimestamp(sec, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def dumps(record: Mapping[str, Any]) -> str:
    """Serialise a record as one compact JSON line (no newline), keys in schema order.

    orjson writes the same compact UTF-8 JSON as ``json.dumps`` at about a tenth of its cost
    (measured: 8 µs against 45-100 µs for a record); what it refuses (integers beyond 64 bits,
    lone surrogates) goes through ``json``. orjson writes NaN as ``null`` where ``json`` raises:
    none reaches a record (``inputs.jsonable`` and ``inputs.parse_time_ns`` refuse them in the
    caller's thread).
    """
    try:
        return orjson.dumps(record).decode("utf-8")
    except (TypeError, ValueError):
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _u_escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    if c < 0x10000:
        return f"\\u{c:04x}"
    c -= 0x10000
    return f"\\u{0xD800 + (c >> 10):04x}\\u{0xDC00 + (c & 0x3FF):04x}"


def ascii_json(text: str) -> str:
    """JSON text with every non-ASCII character written as a ``\\u`` escape (a surrogate pair
    beyond the BMP): still valid JSON, decoded to the same value, and storable where only ASCII
    fits (the TIFF ImageDescription tag). Outside strings JSON holds only ASCII, so escaping each
    character in place is enough.

    >>> ascii_json('{"note":"café"}')
    '{"note":"caf\\\\u00e9"}'
    """
    return text if text.isascii() else _NON_ASCII.sub(_u_escape, text)


def ordered(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with its top-level keys in schema order (unknown keys last)."""
    out = {k: record[k] for k in RECORD_ORDER if k in record}
    out.update((k, v) for k, v in record.items() if k not in out)
    return out

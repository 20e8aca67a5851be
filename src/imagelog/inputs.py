"""What the caller passes to ``log()``, checked in the caller's thread: metadata, labels, the
level, text and times. A value is refused here, naming where it is and what to do instead, or
comes out as what the record holds (docs/record.md, "Metadata")."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from .errors import MetadataNotJSON, MetadataTooLarge
from .record import dumps

__all__ = [
    "LEVELS",
    "MAX_RECORD_BYTES",
    "NANOSECONDS_RANGE",
    "SECONDS_RANGE",
    "check_record_size",
    "iso_ns",
    "jsonable",
    "labels_of",
    "level_of",
    "meta_of",
    "parse_time_ns",
    "text_of",
]


#: Unix seconds accepted as a time: 2001-09-09 .. 2286-11-20 (ten digits before the point),
#: so milliseconds, microseconds and monotonic-clock readings cannot pass for one.
SECONDS_RANGE = (10**9, 10**10)
#: Unix nanoseconds accepted as a time (the same span; an int with nineteen digits).
NANOSECONDS_RANGE = (10**18, 10**19)


def parse_time_ns(value: object, *, name: str = "captured_at") -> int:
    """Turn a time into Unix nanoseconds: an aware ``datetime``, a naive one (local time, as
    ``datetime.timestamp()`` reads it), Unix seconds (int or float, 2001..2286) or Unix
    nanoseconds (an int of nineteen digits). Numbers outside those spans raise ``ValueError``
    saying what they look like (milliseconds, microseconds, a monotonic clock).

    >>> parse_time_ns(1_764_000_000.5), parse_time_ns(1_764_000_000_500_000_000)
    (1764000000500000000, 1764000000500000000)
    """
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.astimezone()  # naive = local time, as datetime.timestamp() assumes
        return int(value.timestamp() * 1_000_000) * 1000
    if isinstance(value, np.integer | np.floating):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a datetime or Unix seconds, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if SECONDS_RANGE[0] <= value < SECONDS_RANGE[1]:
        return round(value * 1_000_000) * 1000
    if isinstance(value, int) and NANOSECONDS_RANGE[0] <= value < NANOSECONDS_RANGE[1]:
        return value
    size = abs(value)
    if 10**12 <= size < 10**13:
        guess = "milliseconds since 1970? pass seconds (value / 1000)"
    elif 10**15 <= size < 10**16:
        guess = "microseconds since 1970? pass seconds (value / 1e6)"
    elif NANOSECONDS_RANGE[0] <= size < NANOSECONDS_RANGE[1]:
        guess = "nanoseconds? pass them as an int"
    elif value < SECONDS_RANGE[0]:
        guess = "a monotonic clock or a duration? pass time.time() or a datetime"
    else:
        guess = "pass Unix seconds (time.time()) or a datetime"
    raise ValueError(
        f"{name}={value!r} is not a time imagelog reads: Unix seconds (2001..2286), Unix "
        f"nanoseconds (int) or a datetime; {guess}"
    )


def iso_ns(text: str) -> int:
    """A time in a record's form (ISO 8601: ``iso_utc``'s ``Z``, or an offset) as Unix
    nanoseconds, under ``parse_time_ns``'s rules."""
    return parse_time_ns(_dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


def text_of(text: str, where: str) -> str:
    """Return ``text`` if UTF-8 can hold it; a lone surrogate (a byte that was not UTF-8, kept by
    ``os.fsdecode`` or ``errors="surrogateescape"``) raises ``MetadataNotJSON`` naming where."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = text[exc.start : exc.end]
            raise MetadataNotJSON(
                f"{where} holds {bad!r}, a lone surrogate that UTF-8 cannot hold (a byte that was "
                "not UTF-8, e.g. from os.fsdecode); decode it with errors='replace' first"
            ) from None
    return text


def jsonable(value: Any, where: str = "meta") -> Any:
    """Return ``value`` as plain JSON types, or raise ``MetadataNotJSON`` naming the bad key.

    numpy scalars and small arrays become Python numbers and lists; datetimes become ISO strings.

    >>> jsonable({"score": np.float32(0.5), "box": np.array([1, 2])})
    {'score': 0.5, 'box': [1, 2]}
    """
    if isinstance(value, str):
        return text_of(value, where)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MetadataNotJSON(f"{where} is {value!r}, which JSON cannot hold")
        return value
    if isinstance(value, np.generic):
        return jsonable(value.item(), where)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise MetadataNotJSON(
                    f"{where} has a key {k!r} of type {type(k).__name__}; keys must be str"
                )
            out[text_of(k, f"{where} key")] = jsonable(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        if value.size > 4096:
            raise MetadataNotJSON(
                f"{where} is an array of {value.size} values; log arrays as images"
            )
        return jsonable(value.tolist(), where)
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    raise MetadataNotJSON(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which JSON cannot hold; "
        "use str, int, float, bool, None, lists or dicts"
    )


#: The values of ``log.level`` (``logging``'s level names, lower case).
LEVELS = ("debug", "info", "warning", "error", "critical")


def level_of(level: object) -> str:
    """Check a ``log(level=...)``: one of ``LEVELS`` (any case), returned lower case."""
    if not isinstance(level, str):
        raise TypeError(
            f"level must be one of {', '.join(LEVELS)}, not {type(level).__name__} {level!r}; "
            f"to store it as metadata pass meta={{'level': {level!r}}}"
        )
    if level.lower() not in LEVELS:
        raise ValueError(
            f"level must be one of {', '.join(LEVELS)}, got {level!r}; "
            f"to store it as metadata pass meta={{'level': {level!r}}}"
        )
    return level.lower()


def meta_of(meta: Mapping[str, Any] | None, more: Mapping[str, Any]) -> dict[str, Any]:
    """A record's ``meta``: the ``meta={...}`` dict and the other keyword arguments, as JSON.

    A name in both is refused (which value was meant is not known).

    >>> meta_of({"mode": "train"}, {"score": 0.5})
    {'mode': 'train', 'score': 0.5}
    """
    if meta is None:
        return jsonable(more) if more else {}
    if not isinstance(meta, Mapping):
        raise MetadataNotJSON(
            f"meta must be a dict of str to JSON values, not {type(meta).__name__}"
        )
    both = sorted(set(meta) & set(more))
    if both:
        raise MetadataNotJSON(
            f"metadata {', '.join(map(repr, both))} given twice: in meta= and as a keyword"
        )
    merged = {**meta, **more}
    return jsonable(merged) if merged else {}


#: The most JSON (UTF-8 bytes) the caller's part of one record may take: ``meta``, ``labels`` and
#: ``message`` together. Every reader takes a record as one line, and lines of megabytes break
#: them (DuckDB's JSON reader, ELK's line codecs): big arrays belong beside the image.
MAX_RECORD_BYTES = 2**20


def check_record_size(
    meta: Mapping[str, Any], labels: Mapping[str, str], message: str | None, source: str = ""
) -> None:
    """Raise ``MetadataTooLarge`` when the caller's part of a record (``meta``, ``labels``,
    ``message`` and ``source``) is over ``MAX_RECORD_BYTES`` of JSON."""
    text = len(source) + (0 if message is None else len(message))
    if not meta and not labels and text <= MAX_RECORD_BYTES // 4:  # 4 UTF-8 bytes a character
        return
    size = (_json_bytes(meta) if meta else 0) + (_json_bytes(labels) if labels else 0)
    for part in (message, source):
        size += 0 if part is None else len(part.encode("utf-8", "surrogatepass"))
    if size > MAX_RECORD_BYTES:
        raise MetadataTooLarge(
            f"this frame's metadata takes {size:,} bytes of JSON, over the limit of "
            f"{MAX_RECORD_BYTES:,} (1 MiB) for one record: store large arrays beside the image "
            "(np.save to a file, or log them as an image) and put their path in meta"
        )


def _json_bytes(value: Mapping[str, Any]) -> int:
    try:
        return len(orjson.dumps(value))
    except (TypeError, ValueError):  # what orjson refuses (ints beyond 64 bits): as dumps writes it
        return len(dumps(value).encode("utf-8", "surrogatepass"))


def labels_of(labels: Mapping[str, Any] | None) -> dict[str, str]:
    """Check ECS ``labels``: flat str keys with scalar values, stored as strings."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise MetadataNotJSON(f"labels must be a dict of str to str, not {type(labels).__name__}")
    out = {}
    for k, v in labels.items():
        if not isinstance(k, str):
            raise MetadataNotJSON(f"labels key {k!r} must be a str")
        text_of(k, "labels key")
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, str | int | float):
            out[k] = text_of(str(v), f"labels.{k}")
        else:
            raise MetadataNotJSON(f"labels.{k} is a {type(v).__name__}; label values are strings")
    return out

"""The JSON record: every kind of index line is built here, with ECS field names.

Kinds (``event.action``): ``logged`` (an image), ``dropped`` (a frame the queue let go),
``failed`` (a frame the write path could not store), ``purged`` (a retention event),
``encoding_warning`` (a stored frame that the encoding checks found suspect), ``triggered`` (a
ring trigger) and ``expired`` (frames that left the ring untriggered, summed up).
A ``logged`` record is built in two halves: the caller's thread builds everything it knows
(``base_record``: ids, times, source, caller metadata); the background fills in what the encoder
and the store learn (``file.*``, ``image.format``, ``image.encoder``; ``stored_file``). docs/record.md
describes the fields.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
import os
import socket
from collections.abc import Mapping
from typing import Any, TypedDict

import numpy as np
import orjson

from .errors import MetadataNotJSON

__all__ = [
    "HOSTNAME",
    "SCHEMA_VERSION",
    "Record",
    "base_record",
    "dropped_record",
    "dumps",
    "encoding_record",
    "expired_record",
    "failed_record",
    "iso_utc",
    "jsonable",
    "mark_triggered",
    "ordered",
    "parse_time_ns",
    "purged_record",
    "stored_file",
    "triggered_record",
]

SCHEMA_VERSION = 1
HOSTNAME = socket.gethostname()
#: The top-level keys of a record, in the order they are written.
RECORD_ORDER = ("@timestamp", "event", "log", "message", "error", "file", "image", "labels", "meta",
                "exif", "host", "process", "imagelog")  # fmt: skip


class FileFields(TypedDict, total=False):
    """``file.*``: where the image is, relative to the run root."""

    path: str
    size: int
    mime_type: str
    extension: str
    offset: int
    member: str
    hash: dict[str, str]


class ImageFields(TypedDict, total=False):
    """``image.*``: what was logged and how it was encoded."""

    id: str
    seq: int
    source: str
    width: int
    height: int
    channels: int
    dtype: str
    channel_order: str
    pixel_format: str
    stride: int
    bit_depth: int
    layout: str
    format: str
    lossless: bool
    encoder: dict[str, Any]


Record = TypedDict(
    "Record",
    {
        "@timestamp": str,
        "event": dict[str, Any],
        "log": dict[str, Any],
        "message": str,
        "file": FileFields,
        "image": ImageFields,
        "labels": dict[str, str],
        "meta": dict[str, Any],
        "exif": dict[str, Any],
        "host": dict[str, Any],
        "process": dict[str, Any],
        "imagelog": dict[str, Any],
    },
    total=False,
)
Record.__doc__ = "One index line, as ``Run.records()`` yields it (see docs/record.md)."


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


def parse_time_ns(value: object, *, name: str = "captured_at") -> int:
    """Turn a datetime, Unix seconds (float) or nanoseconds (int > 1e15) into Unix nanoseconds."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.astimezone()  # naive = local time, as datetime.timestamp() assumes
        return int(value.timestamp() * 1_000_000) * 1000
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a datetime or Unix seconds, not {type(value).__name__}")
    if isinstance(value, int) and value > 10**15:
        return value
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return round(value * 1_000_000) * 1000


def jsonable(value: Any, where: str = "meta") -> Any:
    """Return ``value`` as plain JSON types, or raise ``MetadataNotJSON`` naming the bad key.

    numpy scalars and small arrays become Python numbers and lists; datetimes become ISO strings.

    >>> jsonable({"score": np.float32(0.5), "box": np.array([1, 2])})
    {'score': 0.5, 'box': [1, 2]}
    """
    if value is None or isinstance(value, bool | str):
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
            out[k] = jsonable(v, f"{where}.{k}")
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
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, str | int | float):
            out[k] = str(v)
        else:
            raise MetadataNotJSON(f"labels.{k} is a {type(v).__name__}; label values are strings")
    return out


def dumps(record: Mapping[str, Any]) -> str:
    """Serialise a record as one compact JSON line (no newline), keys in schema order.

    orjson writes the same compact UTF-8 JSON as ``json.dumps`` at about a tenth of its cost
    (measured: 8 µs against 45-100 µs for a record); what it refuses (integers beyond 64 bits,
    lone surrogates) goes through ``json``. orjson writes NaN as ``null`` where ``json`` raises:
    none reaches a record (``jsonable`` and ``parse_time_ns`` refuse them in the caller's thread).
    """
    try:
        return orjson.dumps(record).decode("utf-8")
    except (TypeError, ValueError):
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def base_record(
    *,
    rid: str,
    seq: int,
    source: str,
    captured_ns: int,
    created_ns: int,
    message: str | None,
    level: str,
    labels: dict[str, str],
    meta: dict[str, Any],
    writer: str,
    action: str = "logged",
    pid: int | None = None,
) -> dict[str, Any]:
    """The caller-thread half of a record (everything but ``file.*`` and encoder fields)."""
    created = iso_utc(created_ns)
    rec: dict[str, Any] = {
        "@timestamp": created if captured_ns == created_ns else iso_utc(captured_ns),
        "event": {"kind": "event", "action": action, "dataset": "imagelog", "created": created},
        "log": {"level": level},
    }
    if message is not None:
        rec["message"] = message
    rec["image"] = {"id": rid, "seq": seq, "source": source}
    if labels:
        rec["labels"] = labels
    if meta:
        rec["meta"] = meta
    rec["host"] = {"name": HOSTNAME}
    rec["process"] = {"pid": pid if pid is not None else os.getpid()}
    rec["imagelog"] = {"schema": SCHEMA_VERSION, "writer": writer}
    return rec


def ordered(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with its top-level keys in schema order (unknown keys last)."""
    out = {k: record[k] for k in RECORD_ORDER if k in record}
    out.update((k, v) for k, v in record.items() if k not in out)
    return out


def stored_file(
    file: Mapping[str, Any],
    key: str,
    data: bytes,
    *,
    sha256: bool,
    offset: int | None = None,
    member: str | None = None,
) -> dict[str, Any]:
    """``file.*`` once the bytes are stored: ``path``, then ``size`` and (optionally) ``hash``.

    A shard member (``imagelog._shards``) also has ``offset`` (where its bytes start in the
    shard ``path``; ``size`` of them) and ``member`` (its name in the tar)."""
    out = {**file, "path": key, "size": len(data)}
    if offset is not None:
        out["offset"] = offset
        out["member"] = member
    if sha256:
        out["hash"] = {"sha256": hashlib.sha256(data).hexdigest()}
    return out


def _not_stored(
    rec: Mapping[str, Any], action: str, reason: str, image: Mapping[str, Any]
) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if k not in ("file", "exif")}  # nothing was stored
    if "sidecar" in rec.get("imagelog", {}):
        out["imagelog"] = {k: v for k, v in rec["imagelog"].items() if k != "sidecar"}
    out["event"] = {**rec["event"], "action": action, "reason": reason, "outcome": "failure"}
    out["image"] = {**rec["image"], **image}
    return out


def dropped_record(rec: Mapping[str, Any], reason: str, image: Mapping[str, Any]) -> dict[str, Any]:
    """The ``dropped`` record of a frame let go before it was written (``queue_full``, ...).

    Args:
        rec: the frame's caller-thread half (``base_record``).
        reason: ``event.reason``.
        image: the frame's ``image.*`` fields (width, height, dtype, ...).
    """
    return ordered(_not_stored(rec, "dropped", reason, image))


def failed_record(
    rec: Mapping[str, Any], reason: str, image: Mapping[str, Any], exc: BaseException
) -> dict[str, Any]:
    """The ``failed`` record of a frame the write path could not store (``error.*`` says why).

    Args:
        rec: the frame's caller-thread half (``base_record``).
        reason: ``event.reason`` (``disk_full``, ``codec``, ...).
        image: the frame's ``image.*`` fields.
        exc: the error; its type and message go to ``error.type`` and ``error.message``.
    """
    out = _not_stored(rec, "failed", reason, image)
    out["error"] = {"type": type(exc).__name__, "message": str(exc)}
    return ordered(out)


def purged_record(
    *, now_ns: int, rid: str, reason: str, message: str, writer: str, purge: dict[str, Any]
) -> dict[str, Any]:
    """The ``purged`` event retention writes for each purge (``imagelog.purge`` says what)."""
    rec = _event(now_ns=now_ns, at_ns=now_ns, rid=rid, action="purged", reason=reason,
                 message=message, writer=writer)  # fmt: skip
    rec["imagelog"]["purge"] = purge
    return rec


def _event(
    *, now_ns: int, at_ns: int, rid: str, action: str, reason: str, message: str, writer: str
) -> dict[str, Any]:
    return {
        "@timestamp": iso_utc(at_ns),
        "event": {
            "kind": "event",
            "action": action,
            "dataset": "imagelog",
            "created": iso_utc(now_ns),
            "id": rid,
            "reason": reason,
            "outcome": "success",
        },
        "log": {"level": "info"},
        "message": message,
        "host": {"name": HOSTNAME},
        "process": {"pid": os.getpid()},
        "imagelog": {"schema": SCHEMA_VERSION, "writer": writer},
    }


def mark_triggered(rec: dict[str, Any], trigger_id: str, reason: str) -> None:
    """Mark a ``logged`` record as saved from the ring by a trigger: ``event.reason`` is the
    trigger's reason, ``labels.trigger`` and ``imagelog.trigger`` its id."""
    rec["event"]["reason"] = reason
    rec["labels"] = {**rec.get("labels", {}), "trigger": trigger_id}
    rec["imagelog"]["trigger"] = trigger_id


def triggered_record(
    *,
    now_ns: int,
    rid: str,
    reason: str,
    writer: str,
    at_ns: int,
    start_ns: int,
    end_ns: int,
    sources: list[str] | None,
    origin: str,
    frames: int,
) -> dict[str, Any]:
    """The ``triggered`` event of a ring trigger: ``event.id`` is the trigger's id, the id that
    the frames it saves carry in ``labels.trigger``; ``imagelog.trigger`` holds its window
    (``from``/``to``, capture time), its ``sources`` (null: all), where it came from (``api`` or
    ``file``) and how many held frames it took from the ring (``frames``; later frames of its
    post window are counted by their own records)."""
    rec = _event(
        now_ns=now_ns, at_ns=at_ns, rid=rid, action="triggered", reason=reason, writer=writer,
        message=f"trigger {reason!r}: saving {iso_utc(start_ns)} .. {iso_utc(end_ns)}",
    )  # fmt: skip
    rec["labels"] = {"trigger": rid}
    rec["imagelog"]["trigger"] = {
        "id": rid,
        "from": iso_utc(max(0, start_ns)),
        "to": iso_utc(end_ns),
        "sources": sources,
        "origin": origin,
        "frames": frames,
    }
    return rec


def expired_record(
    *,
    now_ns: int,
    rid: str,
    reason: str,
    writer: str,
    frames: int,
    nbytes: int,
    first_ns: int,
    last_ns: int,
    seqs: list[list[int]],
    by_source: Mapping[str, int],
) -> dict[str, Any]:
    """The ``expired`` summary of frames that left the ring untriggered (no image is stored).

    ``imagelog.expired``: ``frames`` (how many), ``bytes`` (encoded), ``from``/``to`` (capture
    times of the first and last), ``seqs`` (their ``image.seq`` values as inclusive
    ``[first, last]`` ranges of this writer's sequence) and ``by_source`` (frames per source).
    ``event.reason``: ``ring`` (pushed out by a bound) or ``close`` (held when the log closed).
    """
    rec = _event(
        now_ns=now_ns, at_ns=first_ns, rid=rid, action="expired", reason=reason, writer=writer,
        message=f"{frames} frame(s) left the ring untriggered",
    )  # fmt: skip
    rec["imagelog"]["expired"] = {
        "frames": frames,
        "bytes": nbytes,
        "from": iso_utc(first_ns),
        "to": iso_utc(last_ns),
        "seqs": seqs,
        "by_source": dict(by_source),
    }
    return rec


def encoding_record(
    logged: Mapping[str, Any],
    *,
    now_ns: int,
    rid: str,
    kind: str,
    message: str,
    values: Mapping[str, float],
) -> dict[str, Any]:
    """The ``encoding_warning`` event of a stored frame that looks mis-declared (``checks.py``).

    Args:
        logged: the frame's ``logged`` record, as written.
        now_ns: when the check ran (``event.created``).
        rid: the event's own id (``event.id``); the frame's is ``imagelog.check.image_id``.
        kind: ``event.reason``: ``sheared``, ``bayer_pattern``, ``channel_order``, ``constant``,
            ``saturated`` or ``out_of_range``.
        message: what looks wrong, for people.
        values: the figures behind it (``imagelog.check.values``).
    """
    image = logged.get("image") or {}
    check: dict[str, Any] = {
        "kind": kind,
        "image_id": image.get("id"),
        "source": image.get("source"),
        "path": (logged.get("file") or {}).get("path"),
        "values": dict(values),
    }
    if image.get("pixel_format"):
        check["pixel_format"] = image["pixel_format"]
    return {
        "@timestamp": logged.get("@timestamp", iso_utc(now_ns)),
        "event": {
            "kind": "event",
            "action": "encoding_warning",
            "dataset": "imagelog",
            "created": iso_utc(now_ns),
            "id": rid,
            "reason": kind,
        },
        "log": {"level": "warning"},
        "message": message,
        "host": {"name": HOSTNAME},
        "process": {"pid": os.getpid()},
        "imagelog": {
            "schema": SCHEMA_VERSION,
            "writer": (logged.get("imagelog") or {}).get("writer"),
            "check": check,
        },
    }

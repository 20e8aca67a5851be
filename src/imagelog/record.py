"""The JSON record: every kind of index line is built here, with ECS field names.

Kinds (``event.action``): ``logged`` (an image), ``dropped`` (a frame the queue let go),
``failed`` (a frame the write path could not store), ``purged`` (a retention event),
``encoding_warning`` (a stored frame that the encoding checks found suspect), ``triggered`` (a
ring trigger), ``expired`` (frames that left the ring untriggered, summed up), ``not_selected``
(frames that ``select=`` did not store, summed up), ``tiered`` (a retention tier replaced a
frame's file) and ``thinned`` (frames a tier removed, summed up).
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
import os
import re
import socket
from collections.abc import Mapping
from typing import Any, TypedDict

import orjson

from .errors import UnsupportedRun
from .frames import Frame

__all__ = [
    "HOSTNAME",
    "SCHEMA_VERSION",
    "Record",
    "add_exif",
    "ascii_json",
    "base_record",
    "check_manifest",
    "codec_fields",
    "dropped_record",
    "dumps",
    "encoding_record",
    "expired_record",
    "failed_record",
    "frame_fields",
    "image_ref",
    "iso_utc",
    "mark_sidecar",
    "mark_triggered",
    "new_manifest",
    "not_selected_record",
    "ordered",
    "passthrough_fields",
    "planned_file",
    "purged_record",
    "seq_ranges",
    "stored_file",
    "thinned_record",
    "tiered_record",
    "trigger_spec",
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


def new_manifest(
    *, now_ns: int, version: str, layout: Mapping[str, str], fmt: str
) -> dict[str, Any]:
    """The run manifest (``imagelog.json``) a run's first writer leaves."""
    return {
        "schema": SCHEMA_VERSION,
        "created": iso_utc(now_ns),
        "imagelog": version,
        "layout": dict(layout),
        "format": fmt,
    }


def check_manifest(data: bytes, where: str) -> dict[str, Any]:
    """Parse a run manifest and check that this version may read and append to the run:
    ``UnsupportedRun`` if it is not a manifest or names a newer schema than ``SCHEMA_VERSION``.
    ``imagelog.open()`` and ``imagelog.read()`` both call it; ``where`` names the file."""
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise UnsupportedRun(f"{where} is not JSON: not an imagelog run manifest") from None
    schema = manifest.get("schema") if isinstance(manifest, dict) else None
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise UnsupportedRun(
            f'{where} has no record schema ("schema": {schema!r}): not an imagelog run manifest'
        )
    if schema > SCHEMA_VERSION:
        raise UnsupportedRun(
            f"{where} says record schema {schema}, newer than this imagelog's {SCHEMA_VERSION}: "
            "upgrade imagelog (pip install -U imagelog) to read or append to it"
        )
    assert isinstance(manifest, dict)
    return manifest


def ordered(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with its top-level keys in schema order (unknown keys last)."""
    out = {k: record[k] for k in RECORD_ORDER if k in record}
    out.update((k, v) for k, v in record.items() if k not in out)
    return out


def frame_fields(frame: Frame) -> dict[str, Any]:
    """``image.*`` of what was logged: size, channels, dtype, channel order, and for camera
    frames pixel format, stride and bit depth."""
    fields: dict[str, Any] = {
        "width": frame.width,
        "height": frame.height,
        "channels": frame.channels,
        "dtype": frame.dtype,
        "channel_order": frame.channel_order,
    }
    if frame.converted_from:
        fields["converted_from"] = frame.converted_from
    if frame.pixel_format is not None:
        fields["pixel_format"] = frame.pixel_format
        fields["stride"] = frame.stride
        fields["bit_depth"] = frame.bit_depth
    return fields


def codec_fields(
    name: str, *, lossless: bool, library: str | None, version: str | None, params: Any
) -> dict[str, Any]:
    """``image.format``, ``image.lossless`` and ``image.encoder`` of a frame imagelog encoded."""
    return {
        "format": name,
        "lossless": lossless,
        "encoder": {"name": library or name, "version": version, "params": params},
    }


def passthrough_fields(fmt: str, *, lossless: bool) -> dict[str, Any]:
    """``image.format``, ``image.lossless`` and ``image.encoder`` of bytes stored untouched."""
    return {"format": fmt, "lossless": lossless, "encoder": {"name": "passthrough"}}


def planned_file(key: str, mime_type: str, extension: str) -> dict[str, Any]:
    """``file.*`` before the bytes are stored (``stored_file`` adds size and hash)."""
    return {"path": key, "mime_type": mime_type, "extension": extension}


def add_exif(rec: dict[str, Any], tags: Mapping[str, Any], captured_ns: int | None) -> None:
    """Put a camera image's EXIF tags in ``exif``; ``captured_ns`` (its DateTimeOriginal, when
    the caller gave no ``captured_at``) becomes ``@timestamp``."""
    rec["exif"] = dict(tags)
    if captured_ns is not None:
        rec["@timestamp"] = iso_utc(captured_ns)


def mark_sidecar(rec: dict[str, Any], sidecar: str) -> None:
    """Name the ``.json`` sidecar that holds the record of an image with no room for it."""
    rec["imagelog"]["sidecar"] = sidecar


def image_ref(
    path: str,
    *,
    image_id: str,
    fmt: str,
    dtype: str,
    channels: int,
    encoder: str | None,
    offset: int | None = None,
    size: int | None = None,
) -> dict[str, Any]:
    """The part of a record that ``Run.load`` reads: the image's key (a shard member's
    ``offset`` and ``size`` in it too), and how it was encoded.

    For readers that hold a record's columns rather than the record (the viewer's index).
    """
    file: dict[str, Any] = {"path": path}
    if offset is not None:
        file.update(offset=offset, size=size)
    return {
        "file": file,
        "image": {"id": image_id, "format": fmt, "dtype": dtype, "channels": channels,
                  "encoder": {"name": encoder}},
    }  # fmt: skip


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
    *,
    now_ns: int,
    rid: str,
    writer: str,
    hour: str,
    reason: str,
    whole: bool,
    files: int,
    nbytes: int,
    records: int,
    kept: int,
    ids: list[str],
    message: str | None = None,
) -> dict[str, Any]:
    """The ``purged`` event retention (and a tier's delete step) writes for each purge:
    ``imagelog.purge`` says what (``partition``: the hour; ``whole``; ``files``, ``bytes``,
    ``records``, ``kept``; ``ids``, the purged record ids of a partial purge, a tombstone)."""
    if message is None:
        what = "hour" if whole else "oldest files of hour"
        message = f"purged {what} {hour}: {files} image(s), {nbytes} bytes ({reason})"
    rec = _event(now_ns=now_ns, at_ns=now_ns, rid=rid, action="purged", reason=reason,
                 message=message, writer=writer)  # fmt: skip
    purge: dict[str, Any] = {"partition": hour, "whole": whole, "files": files, "bytes": nbytes,
                             "records": records, "kept": kept}  # fmt: skip
    if ids:
        purge["ids"] = ids
    rec["imagelog"]["purge"] = purge
    return rec


def damaged_record(*, now_ns: int, at_ns: int, rid: str, path: str, message: str) -> dict[str, Any]:
    """The ``damaged`` event ``reindex`` leaves for an image file it cannot adopt."""
    rec = _event(now_ns=now_ns, at_ns=at_ns, rid=rid, action="damaged", reason="unreadable",
                 message=message, writer="reindex")  # fmt: skip
    rec["event"]["outcome"] = "failure"
    rec["file"] = {"path": path}
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


def seq_ranges(seqs: list[int]) -> list[list[int]]:
    """``image.seq`` values as sorted inclusive ``[first, last]`` ranges (summaries' ``seqs``).

    >>> seq_ranges([5, 1, 2, 3, 7])
    [[1, 3], [5, 5], [7, 7]]
    """
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def not_selected_record(
    *,
    now_ns: int,
    rid: str,
    writer: str,
    frames: int,
    first_ns: int,
    last_ns: int,
    seqs: list[list[int]],
    by_source: Mapping[str, int],
    by_reason: Mapping[str, int],
) -> dict[str, Any]:
    """The ``not_selected`` summary of frames ``select=`` did not store (no image is stored).

    ``imagelog.not_selected``: ``frames``, ``from``/``to`` (capture times of the first and
    last), ``seqs`` (their ``image.seq`` values as inclusive ``[first, last]`` ranges of this
    writer's sequence), ``by_source`` and ``by_reason`` (frames per source and per reason:
    ``unchanged``, ``not_sampled``, ``not_near``, ``rate``, ``budget``).
    ``event.reason`` is ``select``.
    """
    rec = _event(
        now_ns=now_ns, at_ns=first_ns, rid=rid, action="not_selected", reason="select",
        writer=writer, message=f"{frames} frame(s) not selected",
    )  # fmt: skip
    rec["imagelog"]["not_selected"] = {
        "frames": frames,
        "from": iso_utc(first_ns),
        "to": iso_utc(last_ns),
        "seqs": seqs,
        "by_source": dict(by_source),
        "by_reason": dict(by_reason),
    }
    return rec


def trigger_spec(
    *,
    tid: str,
    reason: str,
    now_ns: int,
    at_ns: int,
    before_ns: int | None,
    after_ns: int,
    sources: list[str] | None,
) -> dict[str, Any]:
    """A trigger left as a file (``triggers/<id>.json``) for the ring writers of a run:
    ``at``/``at_ns`` (capture axis), ``before_ns`` (None: all the rings hold), ``after_ns``,
    ``sources`` (None: all), ``created``/``created_ns`` (wall clock)."""
    return {
        "id": tid,
        "reason": reason,
        "at": iso_utc(at_ns),
        "at_ns": at_ns,
        "before_ns": before_ns,
        "after_ns": after_ns,
        "sources": sources,
        "created": iso_utc(now_ns),
        "created_ns": now_ns,
    }


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


def tiered_record(
    logged: Mapping[str, Any],
    *,
    now_ns: int,
    rid: str,
    writer: str,
    kind: str,
    step: int,
    after: str,
    file: Mapping[str, Any],
    image: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``tiered`` event of a frame a retention tier re-encoded or shrank: from then on its
    ``logged`` record reads with ``file`` and ``image`` as given here (the records engine applies
    it). ``imagelog.tiered``: ``image_id``, ``step`` (1-based, in the ladder), ``after`` (the
    step's age), ``file`` and ``image`` (the new ones, whole) and ``from`` (the file replaced).

    Args:
        logged: the frame's record as it reads now.
        kind: ``event.reason``: ``format`` (re-encoded) or ``thumbnail``.
    """
    old_file = logged.get("file") or {}
    old_image = logged.get("image") or {}
    ts = str(logged.get("@timestamp") or iso_utc(now_ns))
    rec = _event(
        now_ns=now_ns, at_ns=now_ns, rid=rid, action="tiered", reason=kind, writer=writer,
        message=f"tier {step} ({kind}, after {after}): {old_file.get('path')} -> {file.get('path')}",
    )  # fmt: skip
    rec["@timestamp"] = ts
    rec["imagelog"]["tiered"] = {
        "image_id": old_image.get("id"),
        "step": step,
        "after": after,
        "file": dict(file),
        "image": dict(image),
        "from": {
            "path": old_file.get("path"),
            "size": old_file.get("size"),
            "format": old_image.get("format"),
            "width": old_image.get("width"),
            "height": old_image.get("height"),
        },
    }
    return rec


def thinned_record(
    *,
    now_ns: int,
    rid: str,
    writer: str,
    step: int,
    after: str,
    interval: float,
    frames_writer: str,
    ids: list[str],
    nbytes: int,
    first_ns: int,
    last_ns: int,
    seqs: list[list[int]],
    by_source: Mapping[str, int],
) -> dict[str, Any]:
    """The ``thinned`` summary of frames a retention tier removed (at most one frame kept per
    ``interval``). ``imagelog.thinned``: ``step``, ``after``, ``interval`` (seconds),
    ``frames``, ``bytes``, ``from``/``to`` (capture times), ``writer`` (whose frames), ``seqs``
    (their ``image.seq`` values as inclusive ranges, as ``expired`` does), ``by_source`` and
    ``ids`` (the records engine leaves these records out, as it does purged ones).
    ``event.reason``: ``thin``."""
    rec = _event(
        now_ns=now_ns, at_ns=first_ns, rid=rid, action="thinned", reason="thin", writer=writer,
        message=f"tier {step}: {len(ids)} frame(s) thinned to one per {interval:g} s",
    )  # fmt: skip
    rec["imagelog"]["thinned"] = {
        "step": step,
        "after": after,
        "interval": interval,
        "frames": len(ids),
        "bytes": nbytes,
        "from": iso_utc(first_ns),
        "to": iso_utc(last_ns),
        "writer": frames_writer,
        "seqs": seqs,
        "by_source": dict(by_source),
        "ids": ids,
    }
    return rec

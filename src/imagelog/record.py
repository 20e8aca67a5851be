"""The JSON record: every kind of index line is built by a builder imported from here, with ECS
field names.

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

This module builds ``logged`` records and the run manifest; the event records are built in
``imagelog._events`` and what every record shares (times, key order, ``dumps``) is in
``imagelog._record_json``; both are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any, TypedDict

from ._events import damaged_record as damaged_record
from ._events import dropped_record as dropped_record
from ._events import encoding_record as encoding_record
from ._events import expired_record as expired_record
from ._events import failed_record as failed_record
from ._events import mark_triggered as mark_triggered
from ._events import not_selected_record as not_selected_record
from ._events import purged_record as purged_record
from ._events import seq_ranges as seq_ranges
from ._events import thinned_record as thinned_record
from ._events import tiered_record as tiered_record
from ._events import trigger_spec as trigger_spec
from ._events import triggered_record as triggered_record
from ._record_json import HOSTNAME as HOSTNAME
from ._record_json import RECORD_ORDER as RECORD_ORDER
from ._record_json import SCHEMA_VERSION as SCHEMA_VERSION
from ._record_json import ascii_json as ascii_json
from ._record_json import dumps as dumps
from ._record_json import iso_utc as iso_utc
from ._record_json import ordered as ordered
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

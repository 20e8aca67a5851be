"""Event records: every kind of index line but ``logged``. ``dropped`` and ``failed`` (a frame
not stored), ``purged``, ``damaged``, ``triggered`` (with the ring's parts of a ``logged``
record: ``mark_triggered``, ``trigger_spec``), ``expired``, ``not_selected``,
``encoding_warning``, ``tiered`` and ``thinned``. ``imagelog.record`` re-exports the builders;
docs/record.md describes the fields."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._record_json import HOSTNAME, SCHEMA_VERSION, iso_utc, ordered


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

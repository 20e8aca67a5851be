"""Hour summaries: what a closed segment holds, counted once by its writer, so reads that only
count (``stats``) take O(hours) instead of O(lines).

A writer that closes an hour's segment (the hour rolls over, or the log closes) leaves
``layout.summary_key(hour, writer)`` beside it: the segment's size in bytes when it was closed,
and per (source, action, reason, format) the rows, bytes, time span and the frames summary
records stand for (``expired``, ``not_selected``, ``thinned``: ``SUMMED``), plus the
ids its ``purged`` events and ``thinned`` summaries list and the range of its record ids. A reader uses a summary only while the segment (or the union of
its parts on object stores) still has exactly that size: a late line, a repair, a rewrite by
reindex or a run from elsewhere makes it stale, and the segment is read instead.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

import orjson

from ..layout import hour_of_key, segment_key, writer_of

__all__ = ["SUMMED", "HourSummary"]

#: Actions whose record sums up frames (``imagelog.<action>.frames``): what ``stats`` counts.
SUMMED = ("expired", "not_selected", "thinned")

_VERSION = 2  # 2: frames of not_selected and thinned summaries too


@dataclasses.dataclass
class HourSummary:
    """The counts of one writer's hour, built line by line (``add``) or read back (``load``)."""

    hour: str
    writer: str
    size: int = 0
    lines: int = 0
    rows: dict[tuple[str | None, ...], list[Any]] = dataclasses.field(default_factory=dict)
    purged: list[str] = dataclasses.field(default_factory=list)
    longest: int = 0
    """The longest line in bytes (readers take lines over 2 MB in another mode)."""
    ids: list[str] = dataclasses.field(default_factory=list)
    """The smallest and the largest record id of the segment (a purge that lists an id in
    between may hide one of its records)."""

    def add(self, lines: Iterable[str], nbytes: int) -> None:
        """Count whole lines that were appended (``nbytes``: their size in the segment)."""
        for line in lines:
            if len(line) > self.longest // 4:
                self.longest = max(self.longest, len(line.encode()))
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(rec, dict):
                continue
            self.lines += 1
            image, event = rec.get("image") or {}, rec.get("event") or {}
            action = event.get("action")
            rid = image.get("id") or event.get("id")
            if isinstance(rid, str):
                self.ids = (
                    [min(self.ids[0], rid), max(self.ids[1], rid)] if self.ids else [rid, rid]
                )
            key = (image.get("source"), action, event.get("reason"), image.get("format"))
            ts = rec.get("@timestamp")
            row = self.rows.get(key)
            if row is None:
                row = self.rows[key] = [0, 0, ts, ts, 0]
            row[0] += 1
            size = (rec.get("file") or {}).get("size")
            row[1] += size if isinstance(size, int) else 0
            if isinstance(ts, str):
                row[2] = ts if row[2] is None or ts < row[2] else row[2]
                row[3] = ts if row[3] is None or ts > row[3] else row[3]
            extra = rec.get("imagelog") or {}
            if action in SUMMED:  # a summary record: the frames it stands for
                frames = (extra.get(action) or {}).get("frames")
                row[4] += frames if isinstance(frames, int) else 0
            elif action in ("purged", "thinned"):  # tombstones (records.columns.purged_sql)
                ids = (extra.get("purge" if action == "purged" else "thinned") or {}).get("ids")
                self.purged.extend(str(i) for i in ids or ())
        self.size += nbytes

    def dumps(self) -> bytes:
        """The summary as stored (JSON)."""
        return json.dumps(
            {"summary": _VERSION, "segment": segment_key(self.hour, self.writer),
             "bytes": self.size, "lines": self.lines,
             "rows": [[*k, *v] for k, v in sorted(self.rows.items(), key=lambda kv: str(kv[0]))],
             "purged": self.purged, "ids": self.ids, "longest": self.longest},
            separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def load(cls, key: str, data: bytes) -> HourSummary | None:
        """A stored summary, or None if it is not one this version reads."""
        try:
            doc = json.loads(data)
            if doc.get("summary") != _VERSION:
                return None
            out = cls(str(hour_of_key(key)), writer_of(key), int(doc["bytes"]), int(doc["lines"]))
            for r in doc["rows"]:
                out.rows[tuple(r[:4])] = list(r[4:9])
            out.purged = [str(i) for i in doc["purged"]]
            out.ids = [str(i) for i in doc["ids"]][:2]
            out.longest = int(doc["longest"])
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None
        return out

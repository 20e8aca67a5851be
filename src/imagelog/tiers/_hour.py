"""What a tier pass writes and removes in an index hour: its events (a segment of a writer id
new to each pass), a batch committed (lines, then the old files), what a killed pass left
cleaned up, and an hour with no frame left removed whole."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..ids import new_writer_id, uuid7
from ..layout import hour_end_ns, hour_of, images_prefix, segment_key
from ..record import dumps, purged_record
from ..stores.base import Segment, Store
from ._frame import _TIER_SUFFIX
from ._ladder import Ladders

#: Writer ids of tier passes start with this (``tier<hex>-<pid>``): their segments hold the
#: tombstones, so a dropped hour loses them last.
TIER_WRITER_PREFIX = "tier"


class _Events:
    """Index lines of one pass, appended to the frame's hour (one writer id per pass)."""

    def __init__(self, store: Store, writer: str = "") -> None:
        self.store = store
        self.writer = writer or TIER_WRITER_PREFIX + new_writer_id()
        self._segments: dict[str, Segment] = {}

    def append(self, hour: str, recs: Sequence[Mapping[str, Any]]) -> None:
        if not recs:
            return
        seg = self._segments.get(hour)
        if seg is None:
            seg = self._segments[hour] = self.store.open_segment(segment_key(hour, self.writer))
        seg.append("".join(dumps(r) + "\n" for r in recs).encode("utf-8"))
        seg.flush()

    def close(self) -> None:
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()


def _hour_gone(ladders: Ladders, hour: str, now: int) -> bool:
    """Whether every ladder ends in a delete step that the whole hour has reached."""
    lads = ladders.all()
    if not lads or not all(lad[-1].delete for lad in lads):
        return False
    return hour_end_ns(hour) + max(int(lad[-1].after_s * 1e9) for lad in lads) <= now


def _drop_hour(store: Store, hour: str, now: int, events: _Events | None) -> int:
    """Remove an hour that no frame is left in: its index files (the tier passes' last, since
    they hold the tombstones), then whatever files are left; a ``purged`` event (whole) goes
    into the current hour. A kill in between leaves tombstoned lines, never a dangling one."""
    from ..layout import hour_of_key, writer_of
    from ..records import list_files

    files = list_files(store)
    jsonl, parquet = files.keys([hour])
    keys = jsonl + parquet
    if not keys:
        return 0
    tier = [k for k in keys if writer_of(k).startswith(TIER_WRITER_PREFIX)]
    summaries = [k for k in files.summaries if hour_of_key(k) == hour]  # counts of what goes
    store.delete([*summaries, *(k for k in keys if k not in tier)])
    store.delete(tier)
    left = [o.key for o in store.list(images_prefix(hour))]
    store.delete(left)
    store.remove_temp(images_prefix(hour))
    if events is not None:
        ev = purged_record(now_ns=now, rid=uuid7(now), reason="tier", writer=events.writer,
                           hour=hour, whole=True, files=len(left), nbytes=0, records=0, kept=0,
                           ids=[],
                           message=f"tier: hour {hour} has no frame left; its index is removed")  # fmt: skip
        events.append(hour_of(now), [ev])
    return len(left)


def _files_of(recs: Iterable[Mapping[str, Any]]) -> list[str]:
    out = []
    for r in recs:
        path = (r.get("file") or {}).get("path")
        if path:
            out.append(str(path))
        side = (r.get("imagelog") or {}).get("sidecar")
        if side:
            out.append(str(side))
    return out


def _commit(
    store: Store, events: _Events, hour: str, batch: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    events.append(hour, [ev for _, ev in batch])
    old = [k for rec, ev in batch for k in _files_of([rec])
           if k != ev["imagelog"]["tiered"]["file"]["path"]]  # fmt: skip
    store.delete(old)


def _clean(store: Store, hour: str, current: set[str]) -> int:
    """Remove what a killed pass left in an hour: files the index names (as a logged record's,
    a tiered event's new or old file) that no current record points at, and tier files
    (``.t<N>.``) no event names. Other unindexed files are left for ``reindex``. The index is
    read again only when the hour holds a file no current record names."""
    listing = [o.key for o in store.list(images_prefix(hour))]
    unknown = [k for k in listing if k not in current]
    if not unknown:
        return 0
    known: set[str] = set()
    for rec in _raw_hour(store, hour):
        action = (rec.get("event") or {}).get("action")
        if action == "logged":
            known.update(_files_of([rec]))
        elif action == "tiered":
            t = (rec.get("imagelog") or {}).get("tiered") or {}
            for k in ((t.get("file") or {}).get("path"), (t.get("from") or {}).get("path"),
                      t.get("sidecar")):  # fmt: skip
                if k:
                    known.add(str(k))
    known -= current
    stale = []
    for key in unknown:
        image = key[:-5] if key.endswith(".json") else key
        tiered_name = bool(_TIER_SUFFIX.search(image.rpartition(".")[0]))
        if key in known or image in known or tiered_name:
            stale.append(key)
    store.delete(stale)
    return len(stale)


def _raw_hour(store: Store, hour: str) -> list[dict[str, Any]]:
    """The ``logged`` and ``tiered`` lines of an index hour as written (no purge or tier rule)."""
    import duckdb

    from ..records import LocalFiles, iter_json, list_files, records_sql

    jsonl, parquet = list_files(store).keys([hour])
    with LocalFiles(store, pin=True) as local:  # the files stay while the connection reads
        con = duckdb.connect(config={"autoinstall_known_extensions": False})
        try:
            rows = records_sql([local.path(k) for k in jsonl], [local.path(k) for k in parquet])
            sql = (f"SELECT CAST(record AS VARCHAR) FROM ({rows}) "
                   "WHERE action IN ('logged', 'tiered')")  # fmt: skip
            return [r for r in iter_json(con, sql) if isinstance(r, dict)]
        finally:
            con.close()

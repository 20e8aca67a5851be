"""Retention: ``max_bytes``, ``max_age`` and ``min_free_bytes``, oldest hour partitions first.

A run is partitioned by log time (UTC hour): ``images/YYYY/MM/DD/HH/...`` and
``index/YYYY-MM-DDTHH_<writer>.jsonl``. Retention keeps a running total of bytes per hour,
built by one scan when it starts and kept up to date from the writer's own writes, so the cost
of keeping a quota does not grow with the number of files logged so far.

Purging:

- An hour older than the current one is purged whole: its image files and its index segments
  (every writer's) are deleted together, so no index line can point at a purged file. Records
  that a keep rule protects (``keep=callable`` or the label ``keep: "1"``) stay: their files are
  not deleted and their index lines move to ``index/<hour>_kept.jsonl``.
- The current hour (still being written) is purged in part, oldest files first, when nothing
  older is left: a ``purged`` index event that lists the record ids (a tombstone) is written
  first, then the files are deleted; ``Run.records()`` leaves out tombstoned records. Their
  index lines stay until the hour is closed and purged whole, so a quota smaller than one
  hour's index cannot be met. Shard members (``imagelog._shards``) are not purged in part:
  a shard belongs to its hour and goes with it (kept records keep their whole shard).
- Every purge writes a ``purged`` event (what, when, why, how many files and bytes) to the
  purging writer's index segment; ``Run.records(include_events=True)`` shows them.

Several processes writing one run: each process counts its own writes exactly and rescans the
two newest hours (the only ones other writers are still adding to) every ``rescan_every``
seconds when other writers' segments exist there, and at each hour rollover. Hours purged by
another process are found stale (empty) when this one tries to purge them and are dropped from
its totals, and since every process purges oldest first, stale hours are always the first
tried. The total may lag other writers' bytes by at most ``rescan_every`` seconds of writing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._shards import member_bytes
from .ids import uuid7
from .index.reader import iter_segment_lines, parquet_records
from .index.segment import IndexWriter
from .layout import (
    IMAGES_PREFIX,
    INDEX_PREFIX,
    KEPT_WRITER,
    compacted_prefix,
    hour_end_ns,
    hour_of,
    hour_of_key,
    images_prefix,
    is_compacted,
    is_segment,
    is_summary,
    segment_key,
    writer_of,
)
from .record import dumps, purged_record
from .stores.base import ObjectInfo, Store

__all__ = [
    "PurgeResult",
    "Retention",
    "Step",
    "keeps_by_label",
]

logger = logging.getLogger("imagelog")

#: Partial purges go this fraction below the quota, so they do not run again after every frame.
SLACK = 0.05
#: An hour is closed (purged whole, not file by file) this long after it ended, so that frames
#: still in flight in any writer have their files and index lines in place.
GRACE_NS = 120 * 10**9


def keeps_by_label(rec: Mapping[str, Any]) -> bool:
    """Whether a record carries the label ``keep`` set to ``1``/``true``/``yes``."""
    labels = rec.get("labels") or {}
    return str(labels.get("keep", "")).lower() in ("1", "true", "yes")


@dataclasses.dataclass(frozen=True)
class Step:
    """One planned purge: a whole hour, or ``need`` bytes of the oldest files of an hour."""

    hour: str
    reason: str
    whole: bool
    bytes: int


@dataclasses.dataclass
class PurgeResult:
    """What one purge deleted (or, in a dry run, would delete)."""

    hour: str
    reason: str
    whole: bool
    files: int = 0
    bytes: int = 0
    records: int = 0
    kept: int = 0
    ids: list[str] = dataclasses.field(default_factory=list)
    dry_run: bool = False


class Retention:
    """The quota keeper of one run, as seen by one writer (thread-safe).

    Args:
        store: the run's store.
        max_bytes: the run's size limit (images, sidecars and index), or None.
        max_age: seconds after which an hour partition is purged, or None.
        min_free_bytes: free space to keep on the run's filesystem, or None.
        keep: records for which this returns True are never purged (nor are records labelled
            ``keep: "1"``).
        index: where purge events go (None: a writer of its own, made on the first purge).
        clock: Unix time in ns (injected in tests so hours pass quickly).
        report: where background errors go (rate-limited warnings).
        pending: the log time (ns) of this writer's oldest frame in flight, or None: an hour
            with frames in flight is not closed yet.
        keep_label: honour the label ``keep: "1"``.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_bytes: int | None = None,
        max_age: float | None = None,
        min_free_bytes: int | None = None,
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
        index: IndexWriter | None = None,
        clock: Callable[[], int] = time.time_ns,
        report: Callable[[str, BaseException], None] | None = None,
        pending: Callable[[], int | None] = lambda: None,
        keep_label: bool = True,
    ) -> None:
        self.keep_label = keep_label
        self.store = store
        self.pending = pending
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.min_free_bytes = min_free_bytes
        self.keep = keep
        self.clock = clock
        self._index = index
        self._own_index = False  # an index writer made here (the CLI's purge) is closed here
        self._report = report
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}
        self._total = 0
        self._settled: set[str] = set()  # hours where only kept records are left
        self.purged: list[PurgeResult] = []

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return any(x is not None for x in (self.max_bytes, self.max_age, self.min_free_bytes))

    @property
    def total(self) -> int:
        """The run's bytes as this writer knows them."""
        return self._total

    def sizes(self) -> dict[str, int]:
        """Bytes per hour partition (a copy)."""
        with self._lock:
            return dict(self._sizes)

    # -- counting ---------------------------------------------------------------------------------
    def scan(self) -> None:
        """Count every partition from a listing of the run (once, when retention starts)."""
        sizes: dict[str, int] = {}
        for info in (*self.store.list(IMAGES_PREFIX), *self.store.list(INDEX_PREFIX)):
            hour = hour_of_key(info.key)
            if hour is not None:
                sizes[hour] = sizes.get(hour, 0) + info.size
        with self._lock:
            self._sizes = sizes
            self._total = sum(sizes.values())

    def rescan(self, hours: Iterable[str]) -> None:
        """Count these hours again from a listing (other writers' bytes, purges elsewhere)."""
        for hour in hours:
            files, segments = self._listing(hour)
            size = sum(o.size for o in files) + sum(o.size for o in segments)
            self._set(hour, size)

    def others_writing(self, hour: str, writer: str) -> bool:
        """Whether segments of other writers exist for ``hour``."""
        for info in self.store.list(f"{INDEX_PREFIX}{hour}_"):
            if is_segment(info.key) and writer_of(info.key) not in (writer, KEPT_WRITER):
                return True
        return False

    def _set(self, hour: str, size: int) -> None:
        with self._lock:
            old = self._sizes.pop(hour, 0)
            if size > 0:
                self._sizes[hour] = size
            else:
                self._settled.discard(hour)
            self._total += size - old

    def _add(self, hour: str, nbytes: int) -> None:
        with self._lock:
            self._sizes[hour] = self._sizes.get(hour, 0) + nbytes
            self._total += nbytes

    def add(self, rec: Mapping[str, Any]) -> bool:
        """Count one written record (its file, sidecar and index line).

        Returns whether the run is now over ``max_bytes`` (a retention pass is due).
        """
        try:
            file = rec.get("file") or {}
            hour = hour_of_key(str(file.get("path", "")))
            if hour is None:
                return False
            line = len(dumps(rec).encode("utf-8")) + 1
            sidecar = line if (rec.get("imagelog") or {}).get("sidecar") else 0
            size = int(file.get("size", 0))
            if "offset" in file:  # a shard member: its tar header and padding too
                size = member_bytes(size)
            self._add(hour, size + line + sidecar)
        except Exception as exc:  # a hook must never fail the frame it counts
            self._warn("retention", exc)
            return False
        return self.max_bytes is not None and self._total > self.max_bytes

    def _warn(self, kind: str, exc: BaseException) -> None:
        if self._report is not None:
            self._report(kind, exc)
        else:
            logger.warning("imagelog: %s: %s", kind, exc)

    # -- planning ---------------------------------------------------------------------------------
    def plan(self, *, free: int | None = None) -> list[Step]:
        """The purges that would bring the run within its limits, oldest first.

        Args:
            free: the free bytes to plan with (default: ask the store).
        """
        with self._lock:
            sizes = dict(self._sizes)
            settled = set(self._settled)
        now = self.clock()
        closed = now - GRACE_NS
        oldest = self.pending()
        if oldest is not None:
            closed = min(closed, oldest)
        current = hour_of(closed)  # this hour and later ones are still written to
        candidates = sorted(h for h in sizes if h not in settled)
        steps: list[Step] = []
        gone: set[str] = set()
        if self.max_age is not None:
            cutoff = min(now - int(self.max_age * 1e9), closed)
            for hour in candidates:
                if hour_end_ns(hour) <= cutoff:
                    steps.append(Step(hour, "max_age", True, sizes[hour]))
                    gone.add(hour)
        left = [h for h in candidates if h not in gone]
        total = sum(sizes.values()) - sum(sizes[h] for h in gone)
        if self.max_bytes is not None and total > self.max_bytes:
            need = total - self.max_bytes
            freed = self._take(left, sizes, current, need, "max_bytes", steps, gone,
                               partial_need=total - int(self.max_bytes * (1 - SLACK)))  # fmt: skip
            total -= freed
            left = [h for h in left if h not in gone]
        if self.min_free_bytes is not None:
            free = self.store.free_bytes() if free is None else free
            if free is not None:
                free += sum(s.bytes for s in steps)
                if free < self.min_free_bytes * (1 + SLACK):
                    need = self.min_free_bytes - free
                    want = int(self.min_free_bytes * (1 + 2 * SLACK)) - free
                    self._take(left, sizes, current, need, "min_free_bytes", steps, gone,
                               partial_need=want)  # fmt: skip
        return steps

    @staticmethod
    def _take(
        hours: list[str],
        sizes: dict[str, int],
        current: str,
        need: int,
        reason: str,
        steps: list[Step],
        gone: set[str],
        *,
        partial_need: int,
    ) -> int:
        freed = 0
        for hour in hours:
            if freed >= need:
                break
            if hour < current:
                steps.append(Step(hour, reason, True, sizes[hour]))
                gone.add(hour)
                freed += sizes[hour]
            else:  # the hour being written: only its oldest files, and enough to leave slack
                want = max(need, partial_need) - freed
                steps.append(Step(hour, reason, False, min(want, sizes[hour])))
                freed += min(want, sizes[hour])
                break
        return freed

    # -- purging ----------------------------------------------------------------------------------
    def enforce(
        self,
        *,
        dry_run: bool = False,
        progress: Callable[[Step, int, int], None] | None = None,
    ) -> list[PurgeResult]:
        """Purge until the run is within its limits (or nothing purgeable is left).

        Args:
            dry_run: plan and measure, delete nothing.
            progress: called before each step with (step, index, number of steps).
        """
        results: list[PurgeResult] = []
        for _ in range(1 if dry_run else 8):
            steps = self.plan()
            if not steps:
                break
            made = 0
            for i, step in enumerate(steps):
                if progress is not None:
                    progress(step, i, len(steps))
                if step.whole:
                    result = self.purge_hour(step.hour, step.reason, dry_run=dry_run)
                else:
                    result = self.purge_oldest(step.hour, step.bytes, step.reason, dry_run=dry_run)
                if result is not None:
                    results.append(result)
                    made += result.bytes or result.files
            if dry_run or not made:
                break
        return results

    def _listing(self, hour: str) -> tuple[list[ObjectInfo], list[ObjectInfo]]:
        files = list(self.store.list(images_prefix(hour)))
        segments = [o for o in self.store.list(f"{INDEX_PREFIX}{hour}_")
                    if is_segment(o.key) or is_summary(o.key)]  # fmt: skip
        # a compacted hour (imagelog.compact): its Parquet files go with it
        segments += [o for o in self.store.list(compacted_prefix(hour)) if is_compacted(o.key)]
        return files, segments

    def _keeps(self, rec: Mapping[str, Any]) -> bool:
        if self.keep_label and keeps_by_label(rec):
            return True
        if self.keep is None:
            return False
        try:
            return bool(self.keep(rec))
        except Exception as exc:  # a failing keep rule keeps: never delete on an error
            self._warn("keep-rule", exc)
            return True

    def _records(self, segments: list[ObjectInfo]) -> list[tuple[bytes, dict[str, Any]]]:
        out: list[tuple[bytes, dict[str, Any]]] = []
        for info in segments:
            if is_summary(info.key):  # counts, not records
                continue
            try:
                data = self.store.get(info.key)
            except FileNotFoundError:
                continue
            if is_compacted(info.key):  # the record column of a compacted hour
                out.extend(parquet_records(data))
                continue
            out.extend((raw, rec) for _, raw, rec in iter_segment_lines(data) if rec is not None)
        return out

    def purge_hour(self, hour: str, reason: str, *, dry_run: bool = False) -> PurgeResult | None:
        """Delete an hour partition whole, except kept records; None if it is already gone."""
        files, segments = self._listing(hour)
        if not files and not segments:
            self._set(hour, 0)
            return None
        kept_lines: list[bytes] = []
        kept_paths: set[str] = set()
        records = 0
        for raw, rec in self._records(segments):
            if (rec.get("event") or {}).get("action") != "logged":
                continue
            records += 1
            if self._keeps(rec):
                kept_lines.append(raw + b"\n")
                path = str((rec.get("file") or {}).get("path", ""))
                kept_paths.update((path, path + ".json"))
        doomed = [o for o in files if o.key not in kept_paths]
        result = PurgeResult(hour, reason, True, dry_run=dry_run, records=records - len(kept_lines))
        result.kept = len(kept_lines)
        result.files = sum(1 for o in doomed if not o.key.endswith(".json"))
        result.bytes = sum(o.size for o in doomed) + sum(o.size for o in segments)
        if dry_run:
            return result
        kept_key = segment_key(hour, KEPT_WRITER)
        kept_data = b"".join(kept_lines)
        if kept_data:  # written (atomically) before anything is deleted
            self.store.put(kept_key, kept_data)
            result.bytes -= len(kept_data)
        self.store.delete(o.key for o in segments if not (kept_data and o.key == kept_key))
        self.store.delete(o.key for o in doomed)
        self.store.remove_temp(images_prefix(hour))  # of writers killed mid-write
        left = sum(o.size for o in files if o.key in kept_paths) + len(kept_data)
        self._set(hour, left)
        if left:
            with self._lock:
                self._settled.add(hour)
        self._record(result)
        return result

    def purge_oldest(
        self, hour: str, need: int, reason: str, *, dry_run: bool = False
    ) -> PurgeResult | None:
        """Delete the oldest files of an hour (at least ``need`` bytes) after a tombstone event."""
        files, segments = self._listing(hour)
        if not files and not segments:
            self._set(hour, 0)
            return None
        sizes = {o.key: o.size for o in files}
        candidates = []
        for _raw, rec in self._records(segments):
            if (rec.get("event") or {}).get("action") != "logged":
                continue
            file = rec.get("file") or {}
            path = str(file.get("path", ""))
            # a shard member goes with its shard's hour, never alone
            if path in sizes and "offset" not in file and not self._keeps(rec):
                created = str((rec.get("event") or {}).get("created", ""))
                candidates.append((created, str((rec.get("image") or {}).get("id", "")), path))
        candidates.sort()
        result = PurgeResult(hour, reason, False, dry_run=dry_run)
        keys: list[str] = []
        for _created, rid, path in candidates:
            if result.bytes >= need:
                break
            keys.append(path)
            result.bytes += sizes[path]
            if path + ".json" in sizes:
                keys.append(path + ".json")
                result.bytes += sizes[path + ".json"]
            result.ids.append(rid)
        if not keys:
            msg = (f"nothing left to purge in {hour}: kept records, and the index lines of "
                   "purged ones, stay until the hour is closed")  # fmt: skip
            self._warn("quota", RuntimeError(msg))
            return None
        result.files = result.records = len(result.ids)
        if dry_run:
            return result
        self._record(
            result
        )  # the tombstone goes first: a crash leaves orphans, never dangling lines
        self.store.delete(keys)
        self._add(hour, -result.bytes)
        return result

    def close(self) -> None:
        """Close the index writer made for ``purged`` events, if one was (object stores upload
        its part now); a writer's own index is closed by the writer."""
        if self._own_index and self._index is not None:
            self._index.close()
            self._own_index = False

    def _record(self, result: PurgeResult) -> None:
        """Write the ``purged`` index event and warn through the ``imagelog`` logger."""
        now = self.clock()
        if self._index is None:
            from .ids import new_writer_id

            self._index = IndexWriter(self.store, new_writer_id())
            self._own_index = True
        rec = purged_record(
            now_ns=now, rid=uuid7(now), writer=self._index.writer, hour=result.hour,
            reason=result.reason, whole=result.whole, files=result.files, nbytes=result.bytes,
            records=result.records, kept=result.kept, ids=result.ids,
        )  # fmt: skip
        self._index.append(rec, now)
        self._add(hour_of(now), len(dumps(rec).encode("utf-8")) + 1)
        self.purged.append(result)
        logger.info("imagelog: %s in %s", rec["message"], self.store.url)

"""A tier pass (``run_pass``): the due hours read once, then per hour its frames deleted, thinned
and re-encoded or shrunk, in that order, under the run's lease; ``TierReport`` says what it did."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any

from ..ids import new_writer_id, uuid7
from ..layout import hour_end_ns, hour_of
from ..record import (
    iso_utc,
    purged_record,
    seq_ranges,
    stored_file,
    thinned_record,
    tiered_record,
)
from ..stores.base import Store
from ._frame import (
    _created_ns,
    _current_after,
    _keep,
    _reencode,
    _thumbnail_format,
    _triggered,
)
from ._hour import (
    TIER_WRITER_PREFIX,
    _clean,
    _commit,
    _drop_hour,
    _Events,
    _files_of,
    _hour_gone,
)
from ._ladder import Ladder, Ladders, Tier
from ._lease import LEASE_S, _acquire, _release, _renew

#: Frames re-encoded between two index appends (each batch: files, then lines, then removals).
BATCH = 32


@dataclasses.dataclass
class TierReport:
    """What a pass did (or, with ``dry_run``, would do)."""

    as_of: str = ""
    hours: int = 0
    frames: int = 0
    tiered: int = 0
    thinned: int = 0
    deleted: int = 0
    failed: int = 0
    exempt: int = 0
    cleaned: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    cpu_s: float = 0.0
    done: bool = True
    dry_run: bool = False
    busy: bool = False
    """Another pass held the run: this one did nothing."""
    by_step: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)

    def count(self, step: int, tier: Tier, n: int = 1) -> None:
        """Count ``n`` frames for a step."""
        name = f"{step}: {tier.describe()}"
        self.by_step[name] = self.by_step.get(name, 0) + n


def _hours_due(
    hours: Iterable[str], ladders: Ladders, now_ns: int, seen: Mapping[str, int]
) -> list[str]:
    """Hours in which some frame crossed a step since the hour was last settled (``seen``)."""
    afters = sorted({int(s.after_s * 1e9) for lad in ladders.all() for s in lad})
    out = []
    for hour in hours:
        end = hour_end_ns(hour)
        start = end - 3_600_000_000_000
        last = seen.get(hour)
        for a in afters:
            if start + a <= now_ns and (last is None or end + a > last):
                out.append(hour)
                break
    return out


def _promoted(store: Store, ladders: Ladders, now_ns: int) -> dict[str, int]:
    """Frames a step's ``max_bytes`` sends on early: id -> the step index they go to."""
    from ..records import iter_json, with_retry

    out: dict[str, int] = {}
    for src_ladder in [(None, ladders.default), *ladders.by_source.items()]:
        source, ladder = src_ladder
        for i, step in enumerate(ladder):
            if step.cap is None or step.delete:
                continue
            lo = now_ns - int(step.after_s * 1e9)
            hi = None if i + 1 == len(ladder) else now_ns - int(ladder[i + 1].after_s * 1e9)
            cond = ["action = 'logged'", f"created < CAST('{iso_utc(lo)}' AS TIMESTAMPTZ)"]
            if hi is not None:
                cond.append(f"created >= CAST('{iso_utc(hi)}' AS TIMESTAMPTZ)")
            if source is not None:
                cond.append("source = ?")
            else:
                named = list(ladders.by_source)
                if named:
                    cond.append(f"source NOT IN ({', '.join('?' * len(named))})")
            params = [source] if source is not None else list(ladders.by_source)
            sql = ("SELECT json_array(id, coalesce(bytes, 0), "
                   "coalesce(json_extract_string(labels, '$.keep'), '')) FROM records WHERE "
                   + " AND ".join(cond) + " ORDER BY created DESC, id DESC")  # fmt: skip

            def rows(con: Any, sql: str = sql, params: list[Any] = params) -> list[Any]:
                return list(iter_json(con, sql, params or None))

            total = 0
            for rid, nbytes, keep in with_retry(store, rows):
                if str(keep).lower() in ("1", "true", "yes"):
                    continue
                total += int(nbytes)
                if total > step.cap:
                    out[str(rid)] = i + 1
    return out


def run_pass(
    store: Store,
    ladders: Ladders,
    *,
    now_ns: int | None = None,
    dry_run: bool = False,
    budget_s: float | None = None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    seen: dict[str, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Any = None,
) -> TierReport:
    """One tier pass over a run (the maintenance thread's and ``imagelog tier``'s).

    Args:
        now_ns: judge ages as if it were this time (``--as-of``); default now.
        dry_run: count what would be done, change nothing.
        budget_s: stop after about this much CPU time (``report.done`` is False then).
        keep: ``open(keep=)``: frames it keeps are exempt, as are frames labelled ``keep``.
        seen: hour -> when it was last settled; updated, so the next pass skips hours no frame of
            which crossed a step since (a writer's maintenance keeps it between passes).
        stop: an event; once set, the pass ends after the frame in hand (``done`` False).

    One pass at a time per run: a pass holds ``tiers.lock`` (a lease, ``LEASE_S``); while
    another live pass holds it, this one does nothing and says so (``report.busy``).
    """
    if dry_run or not ladders:
        return _run_pass(store, ladders, now_ns=now_ns, dry_run=dry_run, budget_s=budget_s,
                         keep=keep, seen=seen, progress=progress, stop=stop)  # fmt: skip
    owner = TIER_WRITER_PREFIX + new_writer_id()
    if not _acquire(store, owner):
        now = time.time_ns() if now_ns is None else now_ns
        return TierReport(as_of=iso_utc(now), busy=True)
    try:
        return _run_pass(store, ladders, now_ns=now_ns, dry_run=dry_run, budget_s=budget_s,
                         keep=keep, seen=seen, progress=progress, stop=stop, owner=owner)  # fmt: skip
    finally:
        _release(store, owner)


def _run_pass(
    store: Store,
    ladders: Ladders,
    *,
    now_ns: int | None = None,
    dry_run: bool = False,
    budget_s: float | None = None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    seen: dict[str, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Any = None,
    owner: str = "",
) -> TierReport:
    """The pass itself (``run_pass`` holds the lease)."""
    from ..index.recover import repair
    from ..records import iter_records, list_files
    from ..run import Run

    now = time.time_ns() if now_ns is None else now_ns
    report = TierReport(as_of=iso_utc(now), dry_run=dry_run)
    if not ladders:
        return report
    cpu0 = time.thread_time()
    if not dry_run and store.local_root is not None:  # object stores: parts are whole
        repair(store, tails_only=True)  # torn lines of a pass killed mid-append
    seen = {} if seen is None else seen
    promoted = _promoted(store, ladders, now) if any(
        s.cap is not None for lad in ladders.all() for s in lad
    ) else {}  # fmt: skip
    files = list_files(store)
    due = set(_hours_due(files.hours, ladders, now, seen))
    for rid in promoted:  # the hour of a promoted frame: its id's time is its log time
        from ..ids import uuid7_time_ns

        due.add(hour_of(uuid7_time_ns(rid)))
    hours = sorted(h for h in due if h in set(files.hours))
    run = Run(store)
    events = None if dry_run else _Events(store, owner)
    # one read of the due hours (the engine's tombstones and tier events are read once)
    groups = _by_hour(iter_records(store, hours=hours))
    leased = time.time()
    try:
        ahead = next(groups, None)
        for n, hour in enumerate(hours):
            if progress is not None:
                progress(n, len(hours))
            recs: list[dict[str, Any]] = []
            if ahead is not None and ahead[0] == hour:
                recs, ahead = ahead[1], next(groups, None)
            failed = report.failed
            finished = _pass_hour(run, store, hour, recs, ladders, now, promoted, keep, events,
                                  report, budget_s, cpu0, stop)  # fmt: skip
            report.hours += 1
            if owner and time.time() - leased > LEASE_S / 2:
                _renew(store, owner)
                leased = time.time()
            if not finished:
                report.done = False
                break
            if not dry_run and report.failed == failed:  # else: tried again next pass
                seen[hour] = now
        if progress is not None:
            progress(len(hours), len(hours))
    finally:
        groups.close()
        if events is not None:
            events.close()
        report.cpu_s = time.thread_time() - cpu0
    return report


def _by_hour(
    records: Iterator[dict[str, Any]],
) -> Generator[tuple[str, list[dict[str, Any]]], None, None]:
    """Records (oldest first, an index hour at a time) grouped by hour of log time, which is
    the index hour a ``logged`` line is in."""
    hour, group = "", list[dict[str, Any]]()
    try:
        for rec in records:
            h = hour_of(_created_ns(rec))
            if h != hour and group:
                yield hour, group
                group = []
            hour = h
            group.append(rec)
        if group:
            yield hour, group
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()


def _over(budget_s: float | None, cpu0: float) -> bool:
    return budget_s is not None and time.thread_time() - cpu0 >= budget_s


def _pass_hour(
    run: Any,
    store: Store,
    hour: str,
    recs: list[dict[str, Any]],
    ladders: Ladders,
    now: int,
    promoted: Mapping[str, int],
    keep: Callable[[Mapping[str, Any]], bool] | None,
    events: _Events | None,
    report: TierReport,
    budget_s: float | None,
    cpu0: float,
    stop: Any = None,
) -> bool:
    """One hour; False if the budget ran out first."""
    dry = events is None
    before = report.bytes_before
    deletes: list[dict[str, Any]] = []
    thin_groups: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    thin_step: dict[tuple[int, str, int], tuple[int, Tier]] = {}
    encodes: list[tuple[dict[str, Any], int, Tier, Ladder]] = []
    kept_buckets: set[tuple[int, str, int]] = set()
    for rec in recs:
        image = rec.get("image") or {}
        source = str(image.get("source", ""))
        ladder = ladders.of(source)
        if not ladder or not (rec.get("file") or {}).get("path"):
            continue
        report.frames += 1
        report.bytes_before += int((rec.get("file") or {}).get("size") or 0)
        age = (now - _created_ns(rec)) / 1e9
        reached = [i for i, s in enumerate(ladder) if s.after_s <= age]
        if _keep(rec, keep):
            report.exempt += 1
            thins = [i for i in reached if ladder[i].kind == "thin"]
            if thins:  # the frame its interval keeps: the others of the interval go
                interval = ladder[thins[-1]].thin_s or 1.0
                bucket = int(_created_ns(rec) // int(interval * 1e9))
                kept_buckets.add((id(ladder), source, bucket))
            continue
        rid = str(image.get("id", ""))
        if rid in promoted:
            reached = list(range(min(promoted[rid], len(ladder)) + 1))
            if promoted[rid] >= len(ladder):  # past the last step: deleted
                deletes.append(rec)
                continue
        if not reached:
            continue
        if ladder[reached[-1]].delete:
            deletes.append(rec)
            continue
        thins = [i for i in reached if ladder[i].kind == "thin"]
        if thins:
            i = thins[-1]
            interval = ladder[i].thin_s or 1.0
            bucket = int(_created_ns(rec) // int(interval * 1e9))
            gkey = (id(ladder), source, bucket)
            thin_groups.setdefault(gkey, []).append(rec)
            thin_step[gkey] = (i, ladder[i])
        files_steps = [i for i in reached if ladder[i].kind in ("format", "thumbnail")]
        if files_steps:
            i = files_steps[-1]
            if ladder[i].after_s > _current_after(rec):
                encodes.append((rec, i, ladder[i], ladder))
    # 1. delete
    if deletes:
        ids = [str(r["image"]["id"]) for r in deletes]
        nbytes = sum(int(r["file"].get("size") or 0) for r in deletes)
        report.deleted += len(ids)
        report.bytes_after -= nbytes
        if not dry:
            assert events is not None
            ev = purged_record(now_ns=now, rid=uuid7(now), reason="tier", writer=events.writer,
                               hour=hour, whole=False, files=len(ids), nbytes=nbytes,
                               records=len(ids), kept=0, ids=ids,
                               message=f"tier: deleted {len(ids)} frame(s) of hour {hour}")  # fmt: skip
            events.append(hour, [ev])
            store.delete(_files_of(deletes))
    gone = {str(r["image"]["id"]) for r in deletes}
    # 2. thin
    removed: list[tuple[dict[str, Any], int, Tier]] = []
    for gkey, group in thin_groups.items():
        group = [r for r in group if str(r["image"]["id"]) not in gone]
        group.sort(key=lambda r: (not _triggered(r), str(r["image"]["id"])))
        i, step = thin_step[gkey]
        removed += [(r, i, step) for r in group[0 if gkey in kept_buckets else 1 :]]
    if removed:
        by_writer: dict[tuple[str, int], list[tuple[dict[str, Any], int, Tier]]] = {}
        for item in removed:
            w = str((item[0].get("imagelog") or {}).get("writer", ""))
            by_writer.setdefault((w, item[1]), []).append(item)
        evs = []
        for (w, i), items in sorted(by_writer.items()):
            rs = [r for r, _, _ in items]
            step = items[0][2]
            report.thinned += len(rs)
            report.bytes_after -= sum(int(r["file"].get("size") or 0) for r in rs)
            report.count(i + 1, step, len(rs))
            times = [_created_ns(r) for r in rs]
            by_source: dict[str, int] = {}
            for r in rs:
                src = str(r["image"].get("source", ""))
                by_source[src] = by_source.get(src, 0) + 1
            if not dry:
                assert events is not None
                evs.append(thinned_record(
                    now_ns=now, rid=uuid7(now), writer=events.writer, step=i + 1,
                    after=step.label, interval=step.thin_s or 0.0, frames_writer=w,
                    ids=[str(r["image"]["id"]) for r in rs],
                    nbytes=sum(int(r["file"].get("size") or 0) for r in rs),
                    first_ns=min(times), last_ns=max(times),
                    seqs=seq_ranges([int(r["image"].get("seq", 0)) for r in rs]),
                    by_source=by_source,
                ))  # fmt: skip
        if not dry:
            assert events is not None
            events.append(hour, evs)  # the tombstones first: a crash leaves files, not lines
            store.delete(_files_of([r for r, _, _ in removed]))
        gone |= {str(r["image"]["id"]) for r, _, _ in removed}
    # 3. re-encode / thumbnail, in batches: files, then lines, then the old files
    finished = True
    moved: set[str] = set()  # the new files of this pass
    batch: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for rec, i, step, ladder in encodes:
        if str(rec["image"]["id"]) in gone:
            continue
        if _over(budget_s, cpu0) or (stop is not None and stop.is_set()):
            finished = False
            break
        if dry:
            report.tiered += 1
            report.count(i + 1, step)
            continue
        assert events is not None
        spec = (
            step.format if step.kind == "format" and step.format else _thumbnail_format(ladder, i)
        )
        eid = uuid7(now)
        try:
            key, data, file, image, sidecar = _reencode(run, rec, spec, step.thumbnail, i + 1,
                                                        step.label, eid)  # fmt: skip
        except Exception as exc:
            report.failed += 1
            report.errors.append(f"{rec['file'].get('path')}: {type(exc).__name__}: {exc}")
            continue
        if sidecar is not None:
            store.put(key + ".json", sidecar.encode("utf-8"))
        store.put(key, data)
        file = stored_file(file, key, data, sha256=True)
        ev = tiered_record(rec, now_ns=now, rid=eid, writer=events.writer, kind=step.kind,
                           step=i + 1, after=step.label, file=file, image=image)  # fmt: skip
        if sidecar is not None:
            ev["imagelog"]["tiered"]["sidecar"] = key + ".json"
        batch.append((rec, ev))
        moved.update((key, key + ".json") if sidecar is not None else (key,))
        report.bytes_after += len(data) - int(rec["file"].get("size") or 0)
        report.tiered += 1
        report.count(i + 1, step)
        if len(batch) >= BATCH:
            _commit(store, events, hour, batch)
            batch = []
    if batch:
        assert events is not None
        _commit(store, events, hour, batch)
    if not dry and finished:
        current = {p for r in recs if str(r["image"]["id"]) not in gone for p in _files_of([r])}
        current |= moved
        report.cleaned += _clean(store, hour, current)
        remaining = [r for r in recs if str((r.get("image") or {}).get("id")) not in gone]
        if not remaining and _hour_gone(ladders, hour, now):
            report.cleaned += _drop_hour(store, hour, now, events)
    report.bytes_after += report.bytes_before - before
    return finished

"""Reading hour summaries (``index.summary``): which of a run's summaries still hold."""

from __future__ import annotations

import bisect
import datetime as _dt
from typing import Any

from ..index.summary import SUMMED, HourSummary
from ..layout import hour_of_key, summary_key, writer_of
from ..stores.base import Store
from .files import LocalFiles, RunFiles

__all__ = ["HourSummary", "Summaries", "counts", "load_summaries"]

#: Valid summaries by (hour, writer).
Summaries = dict[tuple[str, str], HourSummary]


def load_summaries(store: Store, files: RunFiles) -> Summaries:
    """The summaries that still describe their segments exactly (size unchanged)."""
    sizes: dict[tuple[str, str], int] = {}
    for hour, keys in files.jsonl.items():
        for key in keys:
            group = (hour, writer_of(key))
            sizes[group] = sizes.get(group, 0) + files.sizes.get(key, 0)
    out: Summaries = {}
    for key in files.summaries:
        group = (str(hour_of_key(key)), writer_of(key))
        if group not in sizes or summary_key(*group) != key:
            continue  # compacted or removed since: its segments are gone
        try:
            summary = HourSummary.load(key, store.get(key))
        except FileNotFoundError:
            continue
        if summary is not None and summary.size == sizes[group]:
            out[group] = summary
    return out


#: What ``counts`` groups by, and what each group holds.
COUNT_ROW = ("source", "action", "reason", "format", "rows", "bytes", "first", "last", "frames")


def counts(store: Store) -> tuple[list[tuple[Any, ...]], RunFiles]:
    """Rows, bytes, time span and summed-up frames (``SUMMED``) per (source, action, reason,
    format) of the
    ``records`` view (``?`` for a missing field), and the files they came from: summaries where
    they hold, one aggregate query over the rest. An hour where a partial purge hid records is
    read from its lines (its summary counts them)."""
    from .columns import records_sql, without_purged

    def run(
        con: Any, files: RunFiles, local: LocalFiles, summaries: Summaries, big: bool
    ) -> tuple[list[tuple[Any, ...]], RunFiles]:
        purged = sorted(
            i for (i,) in con.execute("SELECT DISTINCT id FROM _purged").fetchall() if i
        )
        usable = {g: s for g, s in summaries.items() if not _hides(purged, s)}
        jsonl, parquet = files.keys()
        rest = [local.path(k) for k in jsonl if (hour_of_key(k), writer_of(k)) not in usable]
        rows = records_sql(rest, [local.path(k) for k in parquet], big=big)
        if purged:
            rows = without_purged(rows)
        out: list[tuple[Any, ...]] = con.execute(
            "SELECT coalesce(source, '?'), coalesce(action, '?'), coalesce(reason, '?'), "
            "coalesce(format, '?'), count(*), coalesce(sum(bytes), 0), min(ts), max(ts), "
            f"NULL FROM ({rows}) GROUP BY ALL"
        ).fetchall()
        # the frames a summary record stands for are in the record: read it for those rows only
        cases = " ".join(f"WHEN '{a}' THEN '$.imagelog.{a}.frames'" for a in SUMMED)
        summed = {(r[0], r[1], r[2], r[3]): r[4] for r in con.execute(
            "SELECT coalesce(source, '?'), action, coalesce(reason, '?'), coalesce(format, '?'), "
            f"sum(TRY_CAST(json_extract_string(record, CASE action {cases} END) AS BIGINT)) "
            f"FROM ({rows}) WHERE action IN {tuple(SUMMED)} GROUP BY ALL"
        ).fetchall()}  # fmt: skip
        out = [(*r[:8], summed.get(r[:4])) if r[1] in SUMMED else r for r in out]
        for summary in usable.values():
            for key, (n, nbytes, lo, hi, frames) in summary.rows.items():
                out.append((*(("?" if k is None else k) for k in key), n, nbytes,
                            _time(lo), _time(hi), frames))  # fmt: skip
        return out, files

    from .engine import with_summaries

    return with_summaries(store, run)


def _hides(purged: list[str], summary: HourSummary) -> bool:
    """Whether a purged id (sorted) falls in the summary's id range."""
    if not purged:
        return False
    if len(summary.ids) != 2:
        return True
    i = bisect.bisect_left(purged, summary.ids[0])
    return i < len(purged) and purged[i] <= summary.ids[1]


def _time(ts: Any) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromisoformat(str(ts))
    except ValueError:
        return None

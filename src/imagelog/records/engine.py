"""SQL over a run: the ``records`` view (DuckDB) over JSON Lines segments and compacted Parquet,
and streaming reads of records in order, one hour at a time.

``records`` holds every line, events included (``action``), without the images that a
``purged`` event or a ``thinned`` summary lists (their ``logged`` rows are left out; the event
rows stay), and with each image as it is now: where retention tiers re-encoded it, the latest
``tiered`` event supersedes its ``logged`` row's file and image fields (``current``). Rows come
out through ``fetchmany`` (no Arrow), so the plain install reads runs.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..layout import hour_of_key, writer_of
from ..stores.base import Store
from .columns import (
    ORDER,
    empty_sql,
    jsonl_sql,
    lines_records_sql,
    parquet_sql,
    purged_sql,
    records_sql,
    sql_str,
    superseded,
    tiered_sql,
    without_purged,
)
from .files import LocalFiles, RunFiles, list_files
from .filters import Filters
from .summary import load_summaries

if TYPE_CHECKING:
    import duckdb

    from .summary import Summaries

__all__ = [
    "MEMORY_LIMIT",
    "check_where",
    "connect",
    "connect_view",
    "iter_json",
    "iter_records",
    "purged_ids",
    "select_lines",
    "warn_torn",
    "with_retry",
    "with_summaries",
]

logger = logging.getLogger("imagelog")
T = TypeVar("T")

#: DuckDB memory limit of a query connection: sorts beyond it spill to a temporary folder.
MEMORY_LIMIT = "192MB"
#: The limit of a relation that ``Run.query`` returns (it cannot be run again with more: any SQL,
#: run when the caller fetches it).
QUERY_MEMORY_LIMIT = "256MB"
#: The limit a read is run again with when one line needs more (parsing a record with tens of
#: megabytes of metadata takes a JSON arena of several times its size).
BIG_MEMORY_LIMIT = "4GB"
_RETRIES = 5
_BATCH = 1024


class LongLines(Exception):
    """A read met a line longer than the default line size: it runs again in big mode.

    Known before the records are read: the tombstone scan of ``connect`` reads every segment
    without a summary, and a summary says its segment's longest line."""


#: Lines up to this many bytes are read in the normal mode (DuckDB's default line size: 2 MiB).
LONG_LINE = 2_000_000


def _big(memory_limit: str) -> bool:
    """Whether a connection of this memory limit reads long lines (``BIG_MEMORY_LIMIT``)."""
    return memory_limit == BIG_MEMORY_LIMIT


def _check_long_lines(cur: Any, big: bool) -> None:
    """Raise ``LongLines`` if a read on ``cur`` skipped a line for its length (not in big mode:
    there such a line is over ``MAX_LINE_BYTES`` and is reported as skipped)."""
    if big:
        return
    try:
        rows = cur.execute(
            "SELECT count(*) FROM reject_errors WHERE error_type = 'LINE SIZE OVER MAXIMUM'"
        ).fetchall()
    except Exception:  # no read with rejects ran on this cursor
        return
    if rows[0][0]:
        raise LongLines


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is a dependency; a broken install
        raise ImportError("imagelog reads runs with DuckDB: pip install duckdb") from None
    return duckdb


#: Lines already reported as skipped, by (key, line): each is reported once per process.
_WARNED: set[tuple[str, int]] = set()


def warn_torn(local: LocalFiles, keys: Iterable[str]) -> int:
    """Warn about segments whose last line is torn (no final newline); return how many.

    The query leaves such lines out; this check reads one byte per file.
    """
    torn = 0
    for key in keys:
        try:
            with open(local.path(key), "rb") as fh:
                if fh.seek(0, 2) == 0:
                    continue
                fh.seek(-1, 2)
                if fh.read(1) == b"\n":
                    continue
        except OSError:
            continue
        torn += 1
        if (key, -1) not in _WARNED:  # once per process and segment
            _WARNED.add((key, -1))
            logger.warning("imagelog: skipping a torn or invalid last line of %s", key)
    return torn


_WHY = {"INVALID ENCODING": "not UTF-8", "LINE SIZE OVER MAXIMUM": "longer than 256 MiB"}


def warn_skipped(cur: Any, local: LocalFiles | None, seen: set[tuple[str, int]] = _WARNED) -> None:
    """Warn once per line that the reads on ``cur`` skipped (not UTF-8, too long), naming the
    file and the line (never printing it)."""
    try:
        rows = cur.execute(
            "SELECT s.file_path, e.line, e.error_type FROM reject_errors e "
            "JOIN reject_scans s USING (scan_id, file_id)"
        ).fetchall()
    except Exception:  # no read with rejects ran on this cursor
        return
    for path, line, kind in rows:
        key = local.key_of(str(path)) if local is not None else str(path)
        if (key, int(line)) in seen:
            continue
        seen.add((key, int(line)))
        why = _WHY.get(str(kind), str(kind).lower())
        logger.warning("imagelog: skipping line %d of %s (%s)", int(line), key, why)


def _new_connection(memory_limit: str, local: LocalFiles) -> duckdb.DuckDBPyConnection:
    con: duckdb.DuckDBPyConnection = _duckdb().connect(
        config={"memory_limit": memory_limit, "autoinstall_known_extensions": False}
    )
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = {sql_str(str(local.spill_dir()))}")
    con.execute("SET TimeZone = 'UTC'")
    return con


def connect(
    store: Store,
    *,
    files: RunFiles | None = None,
    hours: Iterable[str] | None = None,
    memory_limit: str = MEMORY_LIMIT,
    local: LocalFiles | None = None,
    summaries: Summaries | None = None,
    writes: Sequence[str] = (),
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the ``records`` view over a run's index (or some of its hours).

    The connection reads only the run's files (``_confine``); ``writes``: folders it may also
    write to (``imagelog query --csv FILE``).

    ``_all`` is the same without the purge and tier rules, ``_purged`` the purged ids,
    ``_tiered`` the latest ``tiered`` event of each id. ``local`` gives the
    local copies of a remote run's files (keep it while the connection is in use).
    ``summaries``: the purged ids of the segments they describe come from them, so those
    segments are not scanned for tombstones.
    """
    duckdb = _duckdb()
    local = local if local is not None else LocalFiles(store)
    if files is None:  # a compaction may replace segments between the listing and the read
        for attempt in range(_RETRIES):
            try:
                return connect(store, files=list_files(store), hours=hours,
                               memory_limit=memory_limit, local=local, summaries=summaries,
                               writes=writes)  # fmt: skip
            except (duckdb.IOException, FileNotFoundError):
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
    jsonl_keys, parquet_keys = files.keys()
    chosen_j, chosen_p = files.keys(hours) if hours is not None else (jsonl_keys, parquet_keys)
    big = _big(memory_limit)
    con = _new_connection(memory_limit, local)
    warn_torn(local, jsonl_keys)
    all_j = [local.path(k) for k in jsonl_keys]
    all_p = [local.path(k) for k in parquet_keys]
    path_of = dict(zip(jsonl_keys + parquet_keys, all_j + all_p, strict=True))
    summaries = summaries or {}
    if not big and any(s.longest > LONG_LINE for s in summaries.values()):
        con.close()
        raise LongLines
    scan = [path_of[k] for k in jsonl_keys if (hour_of_key(k), writer_of(k)) not in summaries]
    # a table of the (in-memory) database, not TEMP: cursors of this connection see it too
    con.execute(f"CREATE TABLE _purged AS {purged_sql(scan, all_p, big=big)}")
    try:
        _check_long_lines(con, big)
    except LongLines:
        con.close()
        raise
    known = [i for s in summaries.values() for i in s.purged]
    if known:
        con.execute("INSERT INTO _purged SELECT unnest(?::VARCHAR[])", [known])
    rows = records_sql([path_of[k] for k in chosen_j], [path_of[k] for k in chosen_p], big=big)
    # tier passes write their events in segments of their own (never summarised); a summary
    # that counts one is scanned as well
    tiered_in = scan + [path_of[k] for k in jsonl_keys if _has_tier_events(summaries, k)]
    con.execute(f"CREATE TABLE _tiered AS {tiered_sql(tiered_in, all_p)}")
    con.execute(f"CREATE TEMP VIEW _all AS {rows}")
    view = current(con, "SELECT * FROM _all")
    con.execute(f"CREATE TEMP VIEW records AS {view}")
    _confine(con, store, local, writes)
    return con


def _confine(
    con: duckdb.DuckDBPyConnection, store: Store, local: LocalFiles, writes: Sequence[str] = ()
) -> None:
    """From here on the connection reads only the run's files: its folder (local runs), the
    pinned descriptors and the downloaded copies and spill folder of ``local`` (and ``writes``,
    folders the caller writes results to). SQL a user passes (``imagelog query``, ``where=``)
    cannot read or write other files."""
    allowed = [os.path.realpath(local.spill_dir().parent), "/proc/self/fd/"]
    allowed += [os.path.realpath(w) for w in writes]
    root = store.local_root
    if root is not None:
        allowed.append(os.path.realpath(root))
    con.execute("SET allowed_directories = ?", [allowed])
    con.execute("SET enable_external_access = false")


def connect_view(store: Store, *, local: LocalFiles) -> duckdb.DuckDBPyConnection:
    """``connect`` for a relation that runs later (``Run.query``): in the mode for long lines
    if the run has any, which ``connect`` finds out before it returns."""
    try:
        return connect(store, local=local, memory_limit=QUERY_MEMORY_LIMIT)
    except LongLines:
        return connect(store, local=local, memory_limit=BIG_MEMORY_LIMIT)


def current(
    con: Any, rows: str, rules: tuple[bool, bool] | None = None, keep: Sequence[str] = ()
) -> str:
    """``rows`` as readers see them: purged and thinned images left out, tiered ones superseded
    (the one place these rules are applied; ``connect`` made the tables). ``rules``: whether
    each table has rows, if the caller asked ``rules_of`` already; ``keep``: more columns of
    ``rows`` to pass through (after the records' columns, where a rule applies)."""
    purged, tiered = rules_of(con) if rules is None else rules
    if purged:
        rows = without_purged(rows)
    if tiered:
        rows = superseded(rows, keep=keep)
    return rows


def rules_of(con: Any) -> tuple[bool, bool]:
    """Whether the run has tombstones, and ``tiered`` events: the rules ``current`` applies."""
    return _has_purged(con), _has_tiered(con)


def check_where(where: str | None) -> None:
    """DuckDB's error, cut to one line that names ``where``, if ``where`` is not a condition on
    the ``records`` columns (checked against an empty view: nothing is read)."""
    if where is None or not where.strip():
        return
    duckdb = _duckdb()
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.execute(f"CREATE TEMP VIEW records AS {empty_sql()}")
        con.execute(f"SELECT 1 FROM records WHERE ({where}) LIMIT 0")
    except duckdb.Error as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise type(exc)(f"where {where!r}: {why}") from None
    finally:
        con.close()


def _has_tier_events(summaries: Summaries, key: str) -> bool:
    """Whether the summary of this segment (if any) counts ``tiered`` events."""
    summary = summaries.get((str(hour_of_key(key)), writer_of(key)))
    return summary is not None and any(k[1] == "tiered" for k in summary.rows)


def _has_purged(con: Any) -> bool:
    return bool(con.execute("SELECT count(*) FROM _purged").fetchall()[0][0])


def _has_tiered(con: Any) -> bool:
    return bool(con.execute("SELECT count(*) FROM _tiered").fetchall()[0][0])


def purged_ids(store: Store) -> set[str]:
    """The ids that the run's ``purged`` events and ``thinned`` summaries list (the one reader
    of tombstones)."""
    return set(with_retry(store, lambda con: [
        i for (i,) in con.execute("SELECT DISTINCT id FROM _purged").fetchall() if i is not None
    ]))  # fmt: skip


def _retrying(
    store: Store, body: Callable[[LocalFiles, str], T], local: LocalFiles | None = None
) -> T:
    """``body(files, memory_limit)``, run again on a fresh snapshot if a compaction replaced
    segments meanwhile, and once more with ``BIG_MEMORY_LIMIT`` if a huge line needed it."""
    duckdb = _duckdb()
    memory = MEMORY_LIMIT
    for attempt in range(_RETRIES):
        snapshot = local if local is not None else LocalFiles(store, pin=True)
        try:
            return body(snapshot, memory)
        except (duckdb.OutOfMemoryException, LongLines):
            if memory == BIG_MEMORY_LIMIT:
                raise
            memory = BIG_MEMORY_LIMIT  # a huge line: once more, with room for it
        except (duckdb.IOException, FileNotFoundError):
            if attempt == _RETRIES - 1:
                raise
        finally:
            if snapshot is not local:
                snapshot.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _closing(con: Any, local: LocalFiles, fn: Callable[[Any], T], big: bool) -> T:
    try:
        out = fn(con)
        _check_long_lines(con, big)
        warn_skipped(con, local)
        return out
    finally:
        con.close()


def with_retry(
    store: Store,
    fn: Callable[[duckdb.DuckDBPyConnection], T],
    *,
    local: LocalFiles | None = None,
    writes: Sequence[str] = (),
) -> T:
    """``fn(connection)``, listed and run again if a compaction replaced segments meanwhile.

    A connection reads the files listed when it was made; a compaction that removes segments
    after that (their records are in Parquet by then) makes the read fail, never count twice.
    ``writes``: folders ``fn`` may write to besides the run's (``connect``).
    """

    def body(files: LocalFiles, memory: str) -> T:
        con = connect(store, local=files, memory_limit=memory, writes=writes)
        return _closing(con, files, fn, _big(memory))

    return _retrying(store, body, local)


def with_summaries(
    store: Store, fn: Callable[[Any, RunFiles, LocalFiles, Summaries, bool], T]
) -> T:
    """``fn(connection, files, local, summaries, big)``: a connection with the purged ids only
    (no view), the files listed, their local paths, the summaries that hold, and whether reads
    take long lines (``columns.lines_sql``); retried as ``with_retry``."""

    def body(local: LocalFiles, memory: str) -> T:
        files = list_files(store)
        summaries = load_summaries(store, files)
        con = connect(store, files=files, hours=(), local=local, memory_limit=memory,
                      summaries=summaries)  # fmt: skip
        big = _big(memory)
        return _closing(con, local, lambda c: fn(c, files, local, summaries, big), big)

    return _retrying(store, body)


def _fetch(cur: Any, batch: int = _BATCH) -> Iterator[tuple[Any, ...]]:
    while True:
        rows = cur.fetchmany(batch)
        if not rows:
            return
        yield from rows


def iter_json(con: Any, sql: str, params: Any = None) -> Iterator[Any]:
    """The first column of a query on ``con``, row by row, fetched in batches (bounded
    memory); JSON text comes back parsed."""
    res = con.execute(sql, params)
    for (value,) in _fetch(res):
        yield json.loads(value) if isinstance(value, str) else value


_Row = tuple[str, int, str]


def _hour_rows(
    con: duckdb.DuckDBPyConnection,
    local: LocalFiles,
    jsonl: list[str],
    parquet: list[str],
    cond: str,
    params: list[Any],
    rules: tuple[bool, bool],
    desc: bool,
    limit: int | None,
    big: bool,
) -> Generator[_Row, None, None]:
    """One hour's matching rows ``(id, seq, record)`` in order: a heap merge of streams that are
    each in order. A compacted file is sorted already, so it streams as stored (memory: one
    batch); the hour's JSON Lines segments are sorted together by DuckDB (spilling past its
    memory limit). Newest-first reads take DuckDB's top-N of each stream."""
    order = ", ".join(f"{c} {'DESC' if desc else 'ASC'}" for c in ORDER.split(", "))
    cursors = []

    def stream(rows: str, sort: bool) -> Iterator[_Row]:
        if any(rules):
            rows = current(con, rows, rules)
        sql = (
            "SELECT coalesce(id, ''), coalesce(seq, 0), CAST(record AS VARCHAR) "
            f"FROM ({rows}) h WHERE {cond}"
        )
        if sort:
            sql += f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cur = con.cursor()
        cursors.append(cur)
        cur.execute(sql, params or None)
        yield from _fetch(cur)

    # (a join against tombstones or tier events may reorder rows: then each file is sorted too)
    streams = [stream(parquet_sql([local.path(k)]), sort=desc or any(rules)) for k in parquet]
    if jsonl:
        streams.append(stream(jsonl_sql([local.path(k) for k in jsonl], big=big), sort=True))
    try:
        if len(streams) == 1:
            yield from streams[0]
        else:
            yield from heapq.merge(*streams, key=lambda r: (r[0], r[1]), reverse=desc)
    finally:
        for cur in cursors:
            warn_skipped(cur, local)
            cur.close()


def iter_records(
    store: Store,
    *,
    source: str | None = None,
    since: str | None = None,
    until: str | None = None,
    include_events: bool = False,
    where: str | None = None,
    newest_first: bool = False,
    limit: int | None = None,
    local: LocalFiles | None = None,
    filters: Filters | None = None,
    hours: Iterable[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Records as stored, oldest (or newest) first, one hour at a time: memory holds one hour's
    matching rows at most (DuckDB spills a larger sort to disk), never the run.

    ``filters`` replaces the keyword filters when given; ``hours`` reads only these index hours
    (``YYYY-MM-DDTHH``, log time)."""
    duckdb = _duckdb()
    if filters is None:
        filters = Filters(
            sources=() if source is None else (source,),
            since=since,
            until=until,
            where=where,
            events=include_events,
        )
    cond, params = filters.sql()  # bad times and filters fail before anything is read
    check_where(filters.where)
    own = local is None
    local = local if local is not None else LocalFiles(store, pin=True)
    big = False
    for attempt in range(_RETRIES):  # the tombstones of the whole run, read once
        files = list_files(store)
        memory = BIG_MEMORY_LIMIT if big else MEMORY_LIMIT
        try:
            con = connect(store, files=files, hours=(), local=local, memory_limit=memory,
                          summaries=load_summaries(store, files))  # fmt: skip
            break
        except (duckdb.OutOfMemoryException, LongLines):
            if big:
                raise
            big = True
        except (duckdb.IOException, FileNotFoundError):
            if attempt == _RETRIES - 1:
                raise
    try:
        rules = rules_of(con)
        left = limit
        only = None if hours is None else set(hours)
        chosen = [h for h in files.hours if only is None or h in only]
        for hour in chosen[::-1] if newest_first else chosen:
            done = 0  # rows of this hour already yielded
            for attempt in range(_RETRIES):
                jsonl, parquet = files.keys([hour])
                want = None if left is None else left + done
                merged = _hour_rows(con, local, jsonl, parquet, cond, params, rules,
                                    newest_first, want, big)  # fmt: skip
                try:
                    for i, (_, _, text) in enumerate(merged):
                        if i < done:
                            continue  # yielded before a compaction moved this hour
                        yield json.loads(text)
                        done += 1
                        if left is not None:
                            left -= 1
                            if left <= 0:
                                break
                    break
                except (duckdb.OutOfMemoryException, LongLines):
                    if big:
                        raise
                    big = True  # a huge line: this hour once more, with room for it
                    con.execute(f"SET memory_limit = '{BIG_MEMORY_LIMIT}'")
                except (duckdb.IOException, FileNotFoundError):
                    # a compaction replaced this hour's segments since the listing: the same
                    # records, in the same order, are in its Parquet file now
                    if attempt == _RETRIES - 1:
                        raise
                    files = list_files(store)
                finally:
                    merged.close()
            if left is not None and left <= 0:
                return
    finally:
        con.close()
        if own:
            local.close()


def select_lines(lines: list[bytes], filters: Filters) -> list[dict[str, Any]]:
    """Index lines read by a cursor, filtered and in the records' order, parsed."""
    if not lines:
        return []
    cond, params = filters.sql()
    con = _duckdb().connect(config={"autoinstall_known_extensions": False})
    try:
        con.execute("SET TimeZone = 'UTC'")
        texts = [line.decode("utf-8", "replace") for line in lines]
        src = lines_records_sql("SELECT unnest(?::VARCHAR[]) AS line")
        rows = con.execute(
            f"SELECT CAST(record AS VARCHAR) FROM ({src}) WHERE {cond} ORDER BY {ORDER}",
            [texts, *params],
        ).fetchall()
    finally:
        con.close()
    return [json.loads(r) for (r,) in rows]

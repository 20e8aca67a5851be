"""SQL over a run: the ``records`` view (DuckDB) over JSON Lines segments and compacted Parquet.

Needs the ``query`` extra (``pip install "imagelog[query]"``: DuckDB and pyarrow). The view and
its columns are documented in docs/query.md; ``Run.query()``, ``Run.records()``, ``imagelog ls``,
``stats``, ``show``, ``query``, ``export`` and ``tail`` all read through it.

Every JSON line is read as text and its fields are extracted by JSON path, so ``meta`` keys that
differ from line to line or file to file never meet DuckDB's struct inference. A torn line (a
writer killed mid-append) is left out. Per writer and hour, a compacted Parquet file replaces the
JSON Lines segments it was made from: where both exist (a compaction between writing its file and
removing the segments), the Parquet file is read and the segments are not, so each record is read
exactly once.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .layout import INDEX_PREFIX, compacted_key, hour_of_key, is_compacted, is_segment, writer_of
from .stores.base import Store
from .stores.local import LocalStore

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "COLUMNS",
    "LocalFiles",
    "RunFiles",
    "connect",
    "filters_sql",
    "hour_of_key",
    "iter_json",
    "iter_records",
    "lines_records_sql",
    "list_files",
    "parquet_key",
    "records_sql",
    "sql_str",
    "warn_torn",
    "with_retry",
]

logger = logging.getLogger("imagelog")
T = TypeVar("T")

#: The columns of the ``records`` view, in order, with their DuckDB types (see docs/query.md).
COLUMNS: dict[str, str] = {
    "ts": "TIMESTAMPTZ",
    "created": "TIMESTAMPTZ",
    "id": "VARCHAR",
    "seq": "BIGINT",
    "source": "VARCHAR",
    "action": "VARCHAR",
    "reason": "VARCHAR",
    "path": "VARCHAR",
    "bytes": "BIGINT",
    "width": "BIGINT",
    "height": "BIGINT",
    "channels": "BIGINT",
    "dtype": "VARCHAR",
    "format": "VARCHAR",
    "level": "VARCHAR",
    "message": "VARCHAR",
    "labels": "JSON",
    "meta": "JSON",
    "writer": "VARCHAR",
    "record": "JSON",
}

#: Where each column comes from in a JSON line (``record`` is the line itself).
_PATHS: dict[str, str] = {
    "ts": '$."@timestamp"',
    "created": "$.event.created",
    "seq": "$.image.seq",
    "source": "$.image.source",
    "action": "$.event.action",
    "reason": "$.event.reason",
    "path": "$.file.path",
    "bytes": "$.file.size",
    "width": "$.image.width",
    "height": "$.image.height",
    "channels": "$.image.channels",
    "dtype": "$.image.dtype",
    "format": "$.image.format",
    "level": "$.log.level",
    "message": "$.message",
    "writer": "$.imagelog.writer",
}

#: The key of one writer's compacted hour (``layout.compacted_key``).
parquet_key = compacted_key


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """The index files of a run at one moment, grouped by hour: what a query reads.

    ``jsonl`` and ``parquet`` map an hour to its keys; segments that a Parquet file of the same
    writer and hour replaces are already left out.
    """

    jsonl: dict[str, list[str]]
    parquet: dict[str, list[str]]

    @property
    def hours(self) -> list[str]:
        """Every hour with index data, oldest first."""
        return sorted(set(self.jsonl) | set(self.parquet))

    def keys(self, hours: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
        """The JSON Lines and Parquet keys of these hours (all hours by default)."""
        chosen = self.hours if hours is None else list(hours)
        return (
            [k for h in chosen for k in self.jsonl.get(h, ())],
            [k for h in chosen for k in self.parquet.get(h, ())],
        )

    @property
    def writers(self) -> set[str]:
        """Every writer with a segment or a compacted hour."""
        out = {writer_of(k) for ks in self.jsonl.values() for k in ks}
        out |= {writer_of(k) for ks in self.parquet.values() for k in ks}
        return out


def list_files(store: Store) -> RunFiles:
    """List a run's index: JSON Lines segments and compacted hours (one listing)."""
    jsonl: dict[str, list[str]] = {}
    parquet: dict[str, list[str]] = {}
    compacted: set[tuple[str, str]] = set()
    for info in store.list(INDEX_PREFIX):
        hour = hour_of_key(info.key)
        if hour is None:
            continue
        if is_compacted(info.key):
            parquet.setdefault(hour, []).append(info.key)
            compacted.add((hour, writer_of(info.key)))
        elif is_segment(info.key):
            jsonl.setdefault(hour, []).append(info.key)
    for hour, keys in list(jsonl.items()):
        kept = sorted(k for k in keys if (hour, writer_of(k)) not in compacted)
        if kept:
            jsonl[hour] = kept
        else:
            del jsonl[hour]
    for keys in parquet.values():
        keys.sort()
    return RunFiles(jsonl, parquet)


class LocalFiles:
    """Local paths for a run's keys, for DuckDB: a snapshot of the files as they were listed.

    Remote runs: each object is downloaded once into a temporary folder (removed by
    ``close()`` or when this object is collected). Local runs with ``pin=True`` (Linux): each
    file is opened when its path is first asked for and read through ``/proc/self/fd/N``, so a
    compaction or a purge that deletes it afterwards does not take it from a query in progress;
    ``close()`` releases the files. Without ``pin``, or past the open-file budget, the plain path.
    """

    def __init__(self, store: Store, *, pin: bool = False) -> None:
        self.store = store
        self._pin = pin and isinstance(store, LocalStore) and os.path.isdir("/proc/self/fd")
        self._lock = threading.Lock()
        self._tmp: Path | None = None
        self._fds: dict[str, int] = {}
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __enter__(self) -> LocalFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spill_dir(self) -> Path:
        """A temporary folder for DuckDB to spill large sorts to (made on first use)."""
        with self._lock:
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="imagelog-query-"))
                self._finalizer = weakref.finalize(self, _cleanup, self._tmp, self._fds)
            return self._tmp / ".spill"

    def path(self, key: str) -> str:
        """A local path with the object's bytes (``FileNotFoundError`` if it is gone)."""
        if isinstance(self.store, LocalStore):
            path = str(self.store.path_of(key))
            if not self._pin:
                return path
            with self._lock:
                fd = self._fds.get(key)
                if fd is None and len(self._fds) < _pin_budget():
                    fd = self._fds[key] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            return path if fd is None else f"/proc/self/fd/{fd}"
        tmp = self.spill_dir().parent
        with self._lock:
            dest = tmp / key
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(dest.name + ".part")
                part.write_bytes(self.store.get(key))
                part.replace(dest)
            return str(dest)

    def close(self) -> None:
        """Release pinned files and remove downloaded copies."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            else:
                _cleanup(None, self._fds)
            self._tmp = None
            self._finalizer = None


def _cleanup(tmp: Path | None, fds: dict[str, int]) -> None:
    for fd in fds.values():
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def _pin_budget() -> int:
    """How many files one snapshot may hold open: half the soft limit of open files."""
    import resource

    return max(64, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2)


def warn_torn(paths: Iterable[str]) -> int:
    """Warn about segments whose last line is torn (no final newline); return how many.

    The query leaves such lines out; this check reads one byte per file, so the warning the
    pure-Python reader gives for a torn line is kept without parsing anything twice.
    """
    torn = 0
    for path in paths:
        try:
            with open(path, "rb") as fh:
                if fh.seek(0, os.SEEK_END) == 0:
                    continue
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) == b"\n":
                    continue
        except OSError:
            continue
        torn += 1
        logger.warning("imagelog: skipping a torn or invalid last line of %s", path)
    return torn


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join(sql_str(p) for p in paths) + "]"


def _lines_sql(paths: Sequence[str]) -> str:
    """Each line of these files as one VARCHAR ``line`` (no CSV rules: no quotes, no escapes)."""
    return (
        f"read_csv({_sql_list(paths)}, columns={{'line': 'VARCHAR'}}, delim='\\x01', quote='', "
        "escape='', header=false, auto_detect=false, null_padding=false, strict_mode=false)"
    )


def lines_records_sql(lines: str) -> str:
    """The ``records`` columns of JSON lines from any SQL source with a VARCHAR column ``line``
    (``tail`` filters freshly read lines with it: ``SELECT unnest(?) AS line``)."""
    return _jsonl_sql((), lines=lines)


def _jsonl_sql(paths: Sequence[str], *, whole: bool = False, lines: str | None = None) -> str:
    """Typed columns from JSON lines read as text (never struct inference), torn lines left out.

    Every column comes from one ``json_extract_string`` of every path (one parse per line;
    measured 2.5x faster than a parse per column for ``stats``; ``labels`` and ``meta`` come out
    as their JSON text); ``record`` (the line) is parsed only by the queries that use it. (``whole`` is accepted for callers
    that read every column; every query now takes this path.)
    """
    del whole
    names = list(_PATHS)
    every = [_PATHS[n] for n in names] + ["$.image.id", "$.event.id", "$.labels", "$.meta"]
    cols = []
    for name, typ in COLUMNS.items():
        if name == "id":
            expr = f"coalesce(j[{len(names) + 1}], j[{len(names) + 2}])"
        elif name in ("labels", "meta"):  # the object's text, from the same parse
            expr = f"CAST(j[{len(names) + (3 if name == 'labels' else 4)}] AS JSON)"
        elif name == "record":
            expr = "line::JSON"
        else:
            ji = f"j[{names.index(name) + 1}]"
            expr = ji if typ == "VARCHAR" else f"TRY_CAST({ji} AS {typ})"
        cols.append(f"{expr} AS {name}")
    source = f"({lines})" if lines is not None else _lines_sql(paths)
    path_list = "[" + ", ".join(sql_str(p) for p in every) + "]"
    return (
        f"SELECT {', '.join(cols)} FROM (SELECT line, json_extract_string(line, {path_list}) "
        f"AS j FROM {source} WHERE json_valid(line))"
    )


def _parquet_sql(paths: Sequence[str]) -> str:
    cols = ", ".join(
        f"CAST({name} AS JSON) AS {name}" if typ == "JSON" else name
        for name, typ in COLUMNS.items()
    )
    return f"SELECT {cols} FROM read_parquet({_sql_list(paths)}, hive_partitioning=false)"


def _empty_sql() -> str:
    cols = ", ".join(f"CAST(NULL AS {typ}) AS {name}" for name, typ in COLUMNS.items())
    return f"SELECT {cols} WHERE false"


def records_sql(jsonl: Sequence[str], parquet: Sequence[str], *, whole: bool = False) -> str:
    """SQL for every row (events included, purges not applied) of these local files.

    ``whole=True``: every column will be used (each JSON line is parsed once, not per column).
    """
    parts = []
    if jsonl:
        parts.append(_jsonl_sql(jsonl, whole=whole))
    if parquet:
        parts.append(_parquet_sql(parquet))
    return " UNION ALL ".join(parts) if parts else _empty_sql()


def _purged_sql(jsonl: Sequence[str], parquet: Sequence[str]) -> str:
    """The ids that ``purged`` events list: a text search first, so other lines are not parsed."""
    parts = []
    ids = "unnest(from_json(j->'$.imagelog.purge.ids', '[\"VARCHAR\"]'))"
    if jsonl:
        parts.append(
            f"SELECT {ids} AS id FROM (SELECT line::JSON AS j FROM {_lines_sql(jsonl)} "
            'WHERE contains(line, \'"action":"purged"\') '
            "AND json_valid(line)) WHERE j->>'$.event.action' = 'purged'"
        )
    if parquet:
        parts.append(
            f"SELECT {ids} AS id FROM (SELECT CAST(record AS JSON) AS j FROM "
            f"read_parquet({_sql_list(parquet)}, hive_partitioning=false) WHERE action = 'purged')"
        )
    return " UNION ALL ".join(parts) if parts else "SELECT CAST(NULL AS VARCHAR) AS id WHERE false"


#: DuckDB memory limit of a query connection: sorts beyond it spill to a temporary folder.
MEMORY_LIMIT = "256MB"


def connect(
    store: Store,
    *,
    files: RunFiles | None = None,
    hours: Iterable[str] | None = None,
    memory_limit: str = MEMORY_LIMIT,
    local: LocalFiles | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the ``records`` view over a run's index (or some of its hours).

    ``records`` holds every line, events included (``action``), without the images that a
    ``purged`` event lists (their ``logged`` rows are left out; the ``purged`` rows stay).
    ``_all`` is the same without that rule, ``_purged`` the purged ids. ``local`` gives the
    local copies of a remote run's files (keep it while the connection is in use).
    """
    try:
        import duckdb
    except ImportError:  # pragma: no cover - the extra is installed in every test environment
        raise ImportError(
            'imagelog queries need the query extra: pip install "imagelog[query]"'
        ) from None
    local = local if local is not None else LocalFiles(store)
    if files is None:  # a compaction may replace segments between the listing and the read
        for attempt in range(_RETRIES):
            try:
                return connect(store, files=list_files(store), hours=hours,
                               memory_limit=memory_limit, local=local)  # fmt: skip
            except (duckdb.IOException, FileNotFoundError):
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
    jsonl_keys, parquet_keys = files.keys()
    chosen_j, chosen_p = files.keys(hours) if hours is not None else (jsonl_keys, parquet_keys)
    con = duckdb.connect(
        config={"memory_limit": memory_limit, "autoinstall_known_extensions": False}
    )
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = {sql_str(str(local.spill_dir()))}")
    con.execute("SET TimeZone = 'UTC'")
    all_j = [local.path(k) for k in jsonl_keys]
    warn_torn(all_j)
    all_p = [local.path(k) for k in parquet_keys]
    path_of = dict(zip(jsonl_keys + parquet_keys, all_j + all_p, strict=True))
    # a table of the (in-memory) database, not TEMP: cursors of this connection see it too
    con.execute(f"CREATE TABLE _purged AS {_purged_sql(all_j, all_p)}")
    rows = records_sql([path_of[k] for k in chosen_j], [path_of[k] for k in chosen_p])
    con.execute(f"CREATE TEMP VIEW _all AS {rows}")
    view = _without_purged("SELECT * FROM _all") if _has_purged(con) else "SELECT * FROM _all"
    con.execute(f"CREATE TEMP VIEW records AS {view}")
    return con


def _has_purged(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.sql("SELECT count(*) FROM _purged").fetchall()[0][0])


def with_retry(
    store: Store,
    fn: Callable[[duckdb.DuckDBPyConnection], T],
    *,
    local: LocalFiles | None = None,
) -> T:
    """``fn(connection)``, listed and run again if a compaction replaced segments meanwhile.

    A connection reads the files listed when it was made; a compaction that removes segments
    after that (their records are in Parquet by then) makes the read fail, never count twice.
    """
    import duckdb

    for attempt in range(_RETRIES):
        snapshot = local if local is not None else LocalFiles(store, pin=True)
        try:
            con = connect(store, local=snapshot)
            try:
                return fn(con)
            finally:
                con.close()
        except (duckdb.IOException, FileNotFoundError):
            if attempt == _RETRIES - 1:
                raise
        finally:
            if snapshot is not local:
                snapshot.close()
    raise AssertionError("unreachable")  # pragma: no cover


def iter_json(rel: duckdb.DuckDBPyRelation, batch: int = 1024) -> Iterator[Any]:
    """The first column of a relation, row by row, fetched in batches (bounded memory)."""
    for chunk in rel.to_arrow_reader(batch):
        for value in chunk.column(0).to_pylist():
            yield json.loads(value) if isinstance(value, str) else value


def filters_sql(
    *,
    source: str | None,
    since: str | None,
    until: str | None,
    include_events: bool,
    where: str | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of ``Run.records()``'s keyword filters."""
    clauses: list[str] = []
    params: list[Any] = []
    if not include_events:
        clauses.append("action = 'logged'")
    if source is not None:
        clauses.append("source = ?")
        params.append(source)
    if since is not None:
        clauses.append("ts >= CAST(? AS TIMESTAMPTZ)")
        params.append(since)
    if until is not None:
        clauses.append("ts < CAST(? AS TIMESTAMPTZ)")
        params.append(until)
    if where:
        clauses.append(f"({where})")
    return (" AND ".join(clauses) or "true"), params


def _without_purged(rows: str) -> str:
    """Rows minus the ``logged`` rows of purged ids: a hash join against the (small) id table,
    streaming the rows (a correlated NOT EXISTS made DuckDB materialise every row)."""
    return (
        f"SELECT h.* FROM ({rows}) h LEFT JOIN (SELECT DISTINCT id FROM _purged) p "
        "ON h.id = p.id AND h.action = 'logged' WHERE p.id IS NULL"
    )


_RETRIES = 5


def _hour_sql(local: LocalFiles, jsonl: list[str], parquet: list[str]) -> str:
    return records_sql([local.path(k) for k in jsonl], [local.path(k) for k in parquet])


_Row = tuple[str, int, str]


def _hour_rows(
    con: duckdb.DuckDBPyConnection,
    local: LocalFiles,
    jsonl: list[str],
    parquet: list[str],
    cond: str,
    params: list[Any],
    purged: bool,
    desc: bool,
    limit: int | None,
) -> Generator[_Row, None, None]:
    """One hour's matching rows ``(id, seq, record)`` in order: a heap merge of streams that are
    each in order. A compacted file is sorted already, so it streams as stored (memory: one
    batch); the hour's JSON Lines segments are sorted together by DuckDB (spilling past its
    memory limit). Newest-first reads take DuckDB's top-N of each stream."""
    order = "DESC" if desc else "ASC"
    cursors = []

    def stream(rows: str, sort: bool) -> Iterator[_Row]:
        if purged:
            rows = _without_purged(rows)
        sql = (
            "SELECT coalesce(id, ''), coalesce(seq, 0), CAST(record AS VARCHAR) "
            f"FROM ({rows}) h WHERE {cond}"
        )
        if sort:
            sql += f" ORDER BY id {order}, seq {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cur = con.cursor()
        cursors.append(cur)
        for chunk in cur.sql(sql, params=params or None).to_arrow_reader(1024):
            ids, seqs, texts = (chunk.column(i).to_pylist() for i in range(3))
            yield from zip(ids, seqs, texts, strict=True)

    # (a join against purged ids may reorder rows: then each file is sorted too)
    streams = [stream(_parquet_sql([local.path(k)]), sort=desc or purged) for k in parquet]
    if jsonl:
        streams.append(stream(_jsonl_sql([local.path(k) for k in jsonl]), sort=True))
    try:
        if len(streams) == 1:
            yield from streams[0]
        else:
            yield from heapq.merge(*streams, key=lambda r: (r[0], r[1]), reverse=desc)
    finally:
        for cur in cursors:
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
) -> Iterator[dict[str, Any]]:
    """Records as stored, oldest (or newest) first, one hour at a time: memory holds one hour's
    matching rows at most (DuckDB spills a larger sort to disk), never the run."""
    import duckdb

    own = local is None
    local = local if local is not None else LocalFiles(store, pin=True)
    for attempt in range(_RETRIES):  # the tombstones of the whole run, read once
        files = list_files(store)
        try:
            con = connect(store, files=files, hours=(), local=local)
            break
        except (duckdb.IOException, FileNotFoundError):
            if attempt == _RETRIES - 1:
                raise
    purged = _has_purged(con)
    cond, params = filters_sql(
        source=source, since=since, until=until, include_events=include_events, where=where
    )
    left = limit
    hours = files.hours[::-1] if newest_first else files.hours
    try:
        for hour in hours:
            done = 0  # rows of this hour already yielded
            for attempt in range(_RETRIES):
                jsonl, parquet = files.keys([hour])
                want = None if left is None else left + done
                merged = _hour_rows(con, local, jsonl, parquet, cond, params, purged,
                                    newest_first, want)  # fmt: skip
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

"""The viewer's live index: the run's rows in a DuckDB table, kept up to date as writers append.

The records engine (``imagelog.records``) owns the columns, the filters and the cursor over live
segments; this layer keeps the engine's columns of every row in a table on disk (``frames``,
plus where each line is: ``seg``, ``off``, ``len``) so a page of a million frames is one indexed
query, and asks the engine's cursor only for what was appended since the last look.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from ..layout import hour_of_key, writer_of
from ..records import COLUMNS as ENGINE_COLUMNS
from ..records import Filters, LocalFiles, SegmentCursor, parse_time, records_sql
from ..records.columns import (
    SUPERSEDED,
    current_record_sql,
    json_reader_sql,
    latest_tiered_sql,
    lines_records_sql,
    purged_sql,
    tiered_events_sql,
)
from ..run import Run

__all__ = ["COLUMNS", "Filters", "LiveIndex"]

#: Bytes read from a segment per step: bounds memory while a large run is loaded.
CHUNK_BYTES = 16 * 2**20
#: The very first read is small, so a page has frames to show at once while the rest loads.
FIRST_CHUNK_BYTES = 2**20

#: The viewer's own column besides the engine's: the encoder that wrote the image (for decoding).
#: More columns than the engine's, by JSON path: the encoder, and a shard member's place in its
#: shard (``imagelog._shards``); their types (VARCHAR unless named here).
_EXTRA = {"encoder": "$.image.encoder.name", "offset": "$.file.offset"}
_EXTRA_TYPES = {"offset": "BIGINT"}

_MEMORY = "256MB"
_BIG_MEMORY = "4GB"

#: Kept databases open in this process (one ``LiveIndex`` each).
_KEPT: set[str] = set()
_KEPT_LOCK = threading.Lock()

#: The version of the saved session (``_state``): another one is rebuilt, not taken up.
_STATE_VERSION = 3  # 2: the tiered table; 3: offset

#: Columns of the viewer's ``frames`` table (besides ``n``, ``seg``, ``off``, ``len``): the
#: engine's (without ``record``, which stays in the run), ``encoder`` and ``offset``.
COLUMNS = [name for name in ENGINE_COLUMNS if name != "record"] + list(_EXTRA)


def _select_cols(*, parsed: bool) -> str:
    """The ``frames`` columns from engine rows; ``parsed``: the extra columns are there already
    (``lines_records_sql(extra=_EXTRA)``), else they come from ``record``."""
    cols = [f'"{name}"' for name in ENGINE_COLUMNS if name != "record"]
    for name, path in _EXTRA.items():
        value = f'"{name}"' if parsed else f"json_extract_string(record, '{path}')"
        typ = _EXTRA_TYPES.get(name)
        cols.append(f'{value if typ is None else f"TRY_CAST({value} AS {typ})"} AS "{name}"')
    return ", ".join(cols)


class LiveIndex:
    """A run's index lines in DuckDB, kept up to date by reading only what was appended.

    ``refresh()`` reads every segment from where the last call stopped (a background thread
    calls it every ``interval`` seconds after ``start()``); whole hours removed by retention
    take their rows with them. Queries run on per-thread cursors while refreshes go on.

    Example:
        >>> import numpy as np, imagelog, tempfile
        >>> path = tempfile.mkdtemp()
        >>> with imagelog.open(path, format="png") as log:
        ...     _ = log.log(np.zeros((4, 4), np.uint8), source="cam1", score=0.9)
        >>> index = LiveIndex(imagelog.read(path))
        >>> index.refresh()
        1
        >>> index.count(Filters(meta=("score>0.5",)))
        1
        >>> index.close()
    """

    def __init__(self, run: Run, *, db_dir: str | Path | None = None) -> None:
        self.run = run
        self._segments = SegmentCursor(run.store)
        self._files = LocalFiles(run.store)
        self._seg_ids: dict[str, int] = {}
        self._parquet: set[str] = set()  # compacted hours taken
        self._rows = 0
        self._purged = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.resumed = False
        """Whether rows of an earlier session were taken up (``db_dir`` given)."""
        self._kept: str | None = None
        self._con = self._open(db_dir)
        # the index reads its own chunks and the run's compacted hours, and nothing else
        root = run.store.local_root
        allowed = [
            os.path.realpath(self._folder),
            os.path.realpath(root) if root else str(self._files.spill_dir().parent),
        ]
        self._con.execute("SET allowed_directories = ?", [[str(d) for d in allowed]])
        self._con.execute("SET enable_external_access = false")
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loading = True
        """True until the first full pass over the index has finished."""
        self.version = 0
        """Bumped whenever rows were added or removed: pages poll it to follow a live run."""

    # -- the database ----------------------------------------------------------------------
    def _open(self, db_dir: str | Path | None) -> duckdb.DuckDBPyConnection:
        """The run's database in ``db_dir`` (kept between sessions, taken up where the last
        one stopped), or a temporary one (no ``db_dir``, or another viewer holds it)."""
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": _MEMORY,
            "threads": "2",
        }
        if db_dir is not None:
            self._folder = Path(db_dir)
            Path(db_dir).mkdir(parents=True, exist_ok=True)
            name = hashlib.sha256(self.run.url.encode()).hexdigest()[:16]
            path = os.path.realpath(Path(db_dir) / f"run-{name}.duckdb")
            with _KEPT_LOCK:  # DuckDB hands a second connect in this process the same database
                mine = path not in _KEPT
                _KEPT.add(path)
            try:
                if not mine:
                    raise duckdb.IOException(f"{path} is open in this process")
                con = duckdb.connect(path, config=config)
            except duckdb.Error:
                if mine:
                    with _KEPT_LOCK:
                        _KEPT.discard(path)
                # in use by another viewer of this run: this session keeps its own
            else:
                self._kept = path
                con.execute("SET TimeZone = 'UTC'")
                if self._resume(con):
                    self.resumed = True
                    return con
                self._create(con)
                return con
        self._tmp = tempfile.TemporaryDirectory(prefix="imagelog-view-", dir=db_dir)
        self._folder = Path(self._tmp.name)
        # on disk (in a temporary folder outside the run) so a million rows need not sit in RAM
        con = duckdb.connect(str(Path(self._tmp.name) / "index.duckdb"), config=config)
        con.execute("SET TimeZone = 'UTC'")
        self._create(con)
        return con

    @staticmethod
    def _create(con: duckdb.DuckDBPyConnection) -> None:
        types = {**ENGINE_COLUMNS, **dict.fromkeys(_EXTRA, "VARCHAR"), **_EXTRA_TYPES}
        cols = ", ".join(f'"{n}" {types[n]}' for n in COLUMNS)
        for table in ("frames", "purged", "tiered", "_state"):
            con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute(f"CREATE TABLE frames (n BIGINT, seg INTEGER, off BIGINT, len INTEGER, {cols})")
        con.execute("CREATE TABLE purged (id VARCHAR)")
        empty = "SELECT CAST(NULL AS VARCHAR) AS line WHERE false"  # retention tiers' events
        con.execute(f"CREATE TABLE tiered AS {tiered_events_sql((), (), lines=empty)}")
        con.execute("CREATE TABLE _state (v VARCHAR)")

    def _resume(self, con: duckdb.DuckDBPyConnection) -> bool:
        """Take up a saved session of the same columns: rows, and the cursor where it stood."""
        try:
            (text,) = con.execute("SELECT v FROM _state").fetchall()[0]
            state = json.loads(text)
        except (duckdb.Error, IndexError, ValueError):
            return False
        if state.get("version") != _STATE_VERSION or state.get("columns") != COLUMNS:
            return False
        self._seg_ids = {str(k): int(v) for k, v in state["seg_ids"].items()}
        self._parquet = set(state["cursor"].get("parquet") or ())
        self._rows = int(state["rows"])
        for key in self._segments.restore(state["cursor"]):  # rewritten since: read again
            if key in self._seg_ids:
                con.execute("DELETE FROM frames WHERE seg = ?", [self._seg_ids[key]])
        self._purged = int(con.execute("SELECT count(*) FROM purged").fetchall()[0][0])
        return True

    def _save(self) -> None:
        """The cursor and row numbering, in the transaction of the rows they account for."""
        state = {"version": _STATE_VERSION, "columns": COLUMNS, "seg_ids": self._seg_ids,
                 "rows": self._rows, "cursor": self._segments.state(self._parquet)}  # fmt: skip
        self._con.execute("DELETE FROM _state")
        self._con.execute("INSERT INTO _state VALUES (?)", [json.dumps(state)])

    # -- reading ---------------------------------------------------------------------------
    def start(self, interval: float = 0.25) -> None:
        """Read the index in a background thread, then look for new lines every ``interval`` s."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.refresh()
                except Exception:  # a vanished file mid-read: the next pass reads it again
                    import logging

                    logging.getLogger("imagelog").exception("imagelog view: reading the index")
                self.loading = False
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="imagelog-view-index", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the background thread; a temporary database is removed, a kept one stays."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._con.close()
        if self._kept is not None:
            with _KEPT_LOCK:
                _KEPT.discard(self._kept)
        self._files.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def refresh(self) -> int:
        """Read what was appended to every segment since the last call; returns the lines read.

        The engine's cursor says what changed: an hour that compaction moved into Parquet is
        read from there, once, and its segments' rows leave in the same transaction; an hour
        that retention removed takes its rows with it.
        """
        with self._lock:
            added = 0
            changes = self._segments.look()
            gone = set(changes.gone)
            for key in changes.new_parquet:
                hour, writer = hour_of_key(key), writer_of(key)
                replaced = {k for k in gone if hour_of_key(k) == hour and writer_of(k) == writer}
                added += self._ingest_parquet(key, replaced)
                gone -= replaced
            for key in sorted(gone) + changes.gone_parquet:  # retention removed a whole hour
                self._forget(key)
            for key in changes.grown:
                if self._rows == 0:  # a small first chunk: a page has frames at once
                    for start, chunk in self._segments.read(key, chunk=FIRST_CHUNK_BYTES):
                        added += self._ingest(key, chunk, start)
                        break
                for start, chunk in self._segments.read(key, chunk=CHUNK_BYTES):
                    added += self._ingest(key, chunk, start)
            if added:
                self.version += 1
            return added

    def _forget(self, key: str) -> None:
        self._con.execute("BEGIN")
        if key in self._seg_ids:
            self._con.execute("DELETE FROM frames WHERE seg = ?", [self._seg_ids[key]])
        self._parquet.discard(key)
        self._save()
        self._con.execute("COMMIT")
        self.version += 1

    def _ingest_parquet(self, key: str, replaced: set[str]) -> int:
        """A compacted hour, through the engine's SQL; the segments it replaces leave."""
        seg = self._seg_ids.setdefault(key, len(self._seg_ids))
        path = self._files.path(key)
        con = self._con
        con.execute("BEGIN")
        for old in replaced:
            if old in self._seg_ids:
                con.execute("DELETE FROM frames WHERE seg = ?", [self._seg_ids[old]])
        con.execute(
            f"""INSERT INTO frames SELECT {self._rows} + row_number() OVER () - 1, {seg}, NULL,
                NULL, {_select_cols(parsed=False)} FROM ({records_sql([], [path])})"""
        )
        con.execute(f"INSERT INTO purged {purged_sql([], [path])}")
        con.execute(f"INSERT INTO tiered {tiered_events_sql([], [path])}")
        self._apply_tiers()
        n = int(con.execute("SELECT count(*) FROM frames WHERE seg = ?", [seg]).fetchall()[0][0])
        self._rows += n
        self._parquet.add(key)
        self._save()
        con.execute("COMMIT")
        self._purged = int(self._fetch("SELECT count(*) FROM purged")[0][0])
        return n

    def _ingest(self, key: str, data: bytes, start: int) -> int:
        """Whole lines of a segment, with where each one is (``off``, ``len``), as rows."""
        seg = self._seg_ids.setdefault(key, len(self._seg_ids))
        buf = np.frombuffer(data, np.uint8)
        ends = np.flatnonzero(buf == 10) + 1  # one past each newline
        starts = np.concatenate([[0], ends[:-1]])
        keep = (ends - starts > 1) & (buf[starts] != 10)  # skip blank lines
        starts, ends = starts[keep], ends[keep]
        if not len(starts):
            return 0
        con = self._con
        con.execute(
            """CREATE TEMP TABLE _where AS SELECT unnest(range(?)) AS i,
                 unnest(?::BIGINT[]) AS off, unnest(?::INTEGER[]) AS len""",
            [len(starts), (starts + start).tolist(), (ends - starts).tolist()],
        )
        try:
            for memory in (_MEMORY, _BIG_MEMORY):  # a line of megabytes needs room to parse
                con.execute(f"SET memory_limit = '{memory}'")
                try:
                    self._insert(data, starts, ends, seg)
                    break
                except duckdb.OutOfMemoryException:
                    if memory == _BIG_MEMORY:
                        raise
        finally:
            con.execute(f"SET memory_limit = '{_MEMORY}'")
            con.execute("DROP TABLE IF EXISTS _where")
            con.execute("DROP TABLE IF EXISTS _parsed")
        self._purged = int(self._fetch("SELECT count(*) FROM purged")[0][0])
        return len(starts)

    def _insert(self, data: bytes, starts: Any, ends: Any, seg: int) -> None:
        """Parse a chunk into ``_parsed`` (the engine's columns, by line number ``i``) and add its
        rows, purged ids and the cursor's state in one transaction. DuckDB's JSON reader first
        (several times faster); a chunk it cannot take whole (a damaged line, a line of more
        than 16 MB) is parsed line by line from text, which skips only what is bad."""
        con = self._con
        con.execute("DROP TABLE IF EXISTS _parsed")
        con.execute("DROP TABLE IF EXISTS _purge")  # left by a try that ran out of memory
        chunk = self._chunk_file()
        chunk.write_bytes(data)
        try:
            con.execute(
                "CREATE TEMP TABLE _parsed AS SELECT row_number() OVER () - 1 AS i, * FROM "
                f"({json_reader_sql(str(chunk), extra=_EXTRA)})"
            )
            whole = con.execute("SELECT count(*) FROM _parsed").fetchall()[0][0] == len(starts)
        except duckdb.OutOfMemoryException:
            raise
        except duckdb.Error:
            whole = False
        finally:
            chunk.unlink(missing_ok=True)
        source = "SELECT unnest(range(?)) AS i, rtrim(unnest(?::VARCHAR[]), chr(10)) AS line"
        lines: list[str | None] | None = None  # None: a line that is not UTF-8
        tiers = b'"tiered"' in data or b'"thinned"' in data  # retention tiers' events
        if not whole or tiers:  # tombstones (thinned frames' too) from the lines
            lines = [_utf8(data[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
            con.execute(
                f"CREATE TEMP TABLE _purge AS {purged_sql((), (), lines=source)}",
                [len(lines), lines],
            )
        else:
            con.execute(
                "CREATE TEMP TABLE _purge AS SELECT unnest(purge_ids) AS id FROM _parsed "
                "WHERE action = 'purged' AND purge_ids IS NOT NULL"
            )
        if not whole:
            assert lines is not None
            con.execute("DROP TABLE IF EXISTS _parsed")
            rows = lines_records_sql(source, keep=("i",), extra=_EXTRA)
            con.execute(
                f"CREATE TEMP TABLE _parsed AS SELECT *, NULL::VARCHAR[] AS purge_ids FROM ({rows})",
                [len(lines), lines],
            )
        try:
            before = self._rows
            con.execute("BEGIN")
            try:
                con.execute(f"INSERT INTO frames SELECT {before} + w.i, {seg}, w.off, w.len, "
                            f"{_select_cols(parsed=True)} FROM _parsed p JOIN _where w USING (i)")  # fmt: skip
                con.execute("INSERT INTO purged SELECT id FROM _purge")
                if lines is not None and tiers:
                    con.execute(f"INSERT INTO tiered {tiered_events_sql((), (), lines=source)}",
                                [len(lines), lines])  # fmt: skip
                    self._apply_tiers()
                self._rows = before + len(starts)
                self._save()
                con.execute("COMMIT")
            except BaseException:
                self._rows = before
                con.execute("ROLLBACK")
                raise
        finally:
            con.execute("DROP TABLE IF EXISTS _purge")

    def _chunk_file(self) -> Path:
        return self._folder / f"chunk-{threading.get_ident()}.jsonl"

    def _apply_tiers(self) -> None:
        """Frames a ``tiered`` event superseded show their current file (the engine's rule)."""
        con = self._con
        if not con.execute("SELECT count(*) FROM tiered").fetchall()[0][0]:
            return
        sets = ", ".join(f'"{c}" = t."{c}"' for c in SUPERSEDED)
        con.execute(
            f"""UPDATE frames SET {sets},
                encoder = json_extract_string(t.patch, '$.image.encoder.name')
                FROM ({latest_tiered_sql("SELECT * FROM tiered")}) t
                WHERE frames.id = t.id AND frames.action = 'logged'
                  AND frames.path IS DISTINCT FROM t.path"""
        )

    # -- queries ---------------------------------------------------------------------------
    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._cursor() as cur:
            rows: list[tuple[Any, ...]] = cur.execute(sql, list(params)).fetchall()
            return rows

    def _where(self, filters: Filters, *, events: bool = False) -> tuple[str, list[Any]]:
        cond, params = dataclasses.replace(filters, events=events).sql()
        if self._purged and not events:
            cond += " AND id NOT IN (SELECT id FROM purged)"
        return cond, params

    def count(self, filters: Filters) -> int:
        """How many stored frames match."""
        cond, params = self._where(filters)
        return int(self._fetch(f"SELECT count(*) FROM frames WHERE {cond}", params)[0][0])

    def page(
        self, filters: Filters, offset: int, limit: int, *, total: int | None = None
    ) -> list[dict[str, Any]]:
        """Matching frames, oldest first: ``limit`` of them from position ``offset``.

        With ``total`` (the count the caller holds), a page in the second half is read from the
        end (newest first, then reversed): DuckDB's top-N keeps ``offset + limit`` rows.
        """
        cond, params = self._where(filters)
        order = "ts, id"
        if total is not None and offset > total // 2:
            limit = max(0, min(limit, total - offset))
            offset, order = max(0, total - offset - limit), "ts DESC, id DESC"
        rows = self._fetch(
            f"""SELECT id, strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ'), source, width, height, dtype,
                       format, seq FROM frames WHERE {cond}
                ORDER BY {order} LIMIT ? OFFSET ?""",
            [*params, limit, offset],
        )
        if order != "ts, id":
            rows.reverse()
        keys = ("id", "ts", "source", "width", "height", "dtype", "format", "seq")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def position(self, filters: Filters, ts: str) -> int:
        """How many matching frames come before time ``ts`` (where to scroll to jump there)."""
        cond, params = self._where(filters)
        sql = f"SELECT count(*) FROM frames WHERE {cond} AND ts < CAST(? AS TIMESTAMPTZ)"
        return int(self._fetch(sql, [*params, parse_time(ts, name="ts")])[0][0])

    def sources(self) -> list[dict[str, Any]]:
        """Each source with its frame count and time span."""
        rows = self._fetch(
            """SELECT source, count(*) FILTER (action = 'logged'),
                      strftime(min(ts), '%Y-%m-%dT%H:%M:%S.%fZ'),
                      strftime(max(ts), '%Y-%m-%dT%H:%M:%S.%fZ'),
                      count(*) FILTER (action <> 'logged')
               FROM frames WHERE source IS NOT NULL GROUP BY source ORDER BY source"""
        )
        return [{"source": s, "frames": n, "first": a, "last": b, "events": e}
                for s, n, a, b, e in rows]  # fmt: skip

    def timeline(self, filters: Filters, buckets: int = 240) -> dict[str, Any]:
        """Frame counts per source in ``buckets`` equal time slices, and events (drops, purges)."""
        cond, params = self._where(dataclasses.replace(filters, sources=(), since=None, until=None))
        span = self._fetch(
            f"""SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM frames
                WHERE ({cond}) OR action <> 'logged'""",
            params,
        )[0]
        if span[0] is None:
            return {"t0": None, "t1": None, "step": 0, "series": {}, "events": []}
        t0, t1 = int(span[0]), int(span[1]) + 1
        step = max(1, -(-(t1 - t0) // buckets))
        rows = self._fetch(
            f"""SELECT source, (epoch_us(ts) - {t0}) // {step} AS b, count(*) FROM frames
                WHERE {cond} AND ts IS NOT NULL GROUP BY ALL""",
            params,
        )
        series: dict[str, list[int]] = {}
        for source, b, c in rows:
            series.setdefault(str(source), [0] * buckets)[min(int(b), buckets - 1)] += int(c)
        events = self._fetch(
            f"""SELECT epoch_us(ts), coalesce(source, ''), action, coalesce(reason, ''),
                       coalesce(message, '') FROM frames
                WHERE action <> 'logged' AND ts IS NOT NULL
                  AND epoch_us(ts) BETWEEN {t0} AND {t1} ORDER BY ts LIMIT 5000"""
        )
        return {
            "t0": t0,
            "t1": t1,
            "step": step,
            "series": dict(sorted(series.items())),
            "events": [
                {"t": t, "source": s, "action": a, "reason": r, "message": m}
                for t, s, a, r, m in events
            ],
        }

    def row(self, record_id: str) -> dict[str, Any] | None:
        """The indexed columns of one record, by id."""
        with self._cursor() as cur:
            res = cur.execute(
                "SELECT * FROM frames WHERE id = ? AND action = 'logged' LIMIT 1", [record_id]
            )
            names = [d[0] for d in res.description]
            rows = res.fetchall()
        return dict(zip(names, rows[0], strict=True)) if rows else None

    def neighbours(self, record_id: str) -> dict[str, str | None]:
        """The previous and next frame of the same source (by time), for the arrow keys."""
        rows = self._fetch(
            """WITH me AS (SELECT ts, id, source FROM frames WHERE id = ? AND action = 'logged'
                           LIMIT 1)
               SELECT
                 (SELECT f.id FROM frames f, me WHERE f.source = me.source
                    AND f.action = 'logged' AND (f.ts, f.id) < (me.ts, me.id)
                    ORDER BY f.ts DESC, f.id DESC LIMIT 1),
                 (SELECT f.id FROM frames f, me WHERE f.source = me.source
                    AND f.action = 'logged' AND (f.ts, f.id) > (me.ts, me.id)
                    ORDER BY f.ts, f.id LIMIT 1)""",
            [record_id],
        )
        prev, nxt = rows[0] if rows else (None, None)
        return {"prev": prev, "next": nxt}

    def owns(self, path: str) -> bool:
        """Whether a stored image of this run has this ``file.path``."""
        return bool(self._fetch("SELECT 1 FROM frames WHERE path = ? LIMIT 1", [path]))

    def member(self, path: str, offset: int) -> dict[str, Any] | None:
        """The row of the shard member at ``offset`` in ``path``, if a stored image is it."""
        sql = 'SELECT id, bytes, format FROM frames WHERE path = ? AND "offset" = ? LIMIT 1'
        found = self._fetch(sql, [path, offset])
        return None if not found else dict(zip(("id", "bytes", "format"), found[0], strict=True))

    def line(self, row: dict[str, Any]) -> bytes:
        """The index line a row came from (a compacted hour: its ``record``), made current when
        retention tiers superseded its file."""
        key = next(k for k, v in self._seg_ids.items() if v == row["seg"])
        if row["off"] is None:  # Parquet: the engine keeps the whole record
            rows = records_sql([], [self._files.path(key)])
            sql = f"SELECT CAST(record AS VARCHAR) FROM ({rows}) WHERE id = ?"
            line = str(self._fetch(sql, [row["id"]])[0][0]).encode()
        else:
            line = self._segments.line(key, int(row["off"]), int(row["len"]))
        if row.get("action") != "logged" or not self._fetch(
            "SELECT 1 FROM tiered WHERE id = ? LIMIT 1", [row["id"]]
        ):
            return line
        patched = current_record_sql("CAST(? AS JSON)", "t.patch")  # its current file
        sql = f"""SELECT CAST({patched} AS VARCHAR) FROM
                  ({latest_tiered_sql("SELECT * FROM tiered WHERE id = ?")}) t"""
        return str(self._fetch(sql, [line.decode("utf-8", "replace"), row["id"]])[0][0]).encode()

    @property
    def rows(self) -> int:
        """Index lines read so far (records and events)."""
        return self._rows


def _utf8(value: bytes | None) -> str | None:
    try:
        return None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        return None

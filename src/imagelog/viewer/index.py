"""The viewer's live index: new index lines read incrementally into DuckDB, queried by filters.

The query engine (``Run.query``) answers SQL over a run as it is. A viewer on a live run needs
one more thing: to read only what was appended since the last look. This thin layer keeps, per
segment, the byte offset up to the last whole line it has read, and appends the new lines to a
DuckDB table of the engine's columns (``ts, created, id, seq, source, ...``). A torn last line
(a writer killed mid-line) has no newline yet, so it is never read. Lines are handed to DuckDB as
a file per chunk to DuckDB's JSON reader (no Python object per line).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from ..index import INDEX_PREFIX, writer_of
from ..query import COLUMNS as ENGINE_COLUMNS
from ..query import LocalFiles, hour_of_key, list_files, records_sql
from ..run import Run
from ..stores.local import LocalStore

__all__ = ["COLUMNS", "Filters", "LiveIndex"]

#: Bytes read from a segment per step: bounds memory while a large run is loaded.
CHUNK_BYTES = 16 * 2**20
#: The very first read is small, so a page has frames to show at once while the rest loads.
FIRST_CHUNK_BYTES = 2**20

# The part of a record the viewer reads: DuckDB types by field; the rest stays in the line.
_SCHEMA: dict[str, Any] = {
    "@timestamp": "VARCHAR",
    "event": {"created": "VARCHAR", "id": "VARCHAR", "action": "VARCHAR", "reason": "VARCHAR",
              "outcome": "VARCHAR"},
    "image": {"id": "VARCHAR", "seq": "BIGINT", "source": "VARCHAR", "width": "BIGINT",
              "height": "BIGINT", "channels": "BIGINT", "dtype": "VARCHAR", "format": "VARCHAR",
              "encoder": {"name": "VARCHAR"}},
    "file": {"path": "VARCHAR", "size": "BIGINT"},
    "log": {"level": "VARCHAR"},
    "message": "VARCHAR",
    "imagelog": {"writer": "VARCHAR", "purge": {"ids": ["VARCHAR"]}},
    "labels": "JSON",
    "meta": "JSON",
}  # fmt: skip


def _duck_type(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, list):
        return _duck_type(spec[0]) + "[]"
    return "STRUCT(" + ", ".join(f'"{k}" {_duck_type(v)}' for k, v in spec.items()) + ")"


_COLUMNS_SPEC = "{" + ", ".join(f"'{k}': '{_duck_type(v)}'" for k, v in _SCHEMA.items()) + "}"
_TRANSFORM_SPEC = json.dumps(_SCHEMA, separators=(",", ":"))

# (column, DuckDB type, expression over a parsed record r): the query engine's column names.
_FIELDS: list[tuple[str, str, str]] = [
    ("ts", "TIMESTAMP", 'r."@timestamp"'),
    ("created", "TIMESTAMP", "r.event.created"),
    ("id", "VARCHAR", "coalesce(r.image.id, r.event.id)"),
    ("seq", "BIGINT", "r.image.seq"),
    ("source", "VARCHAR", "r.image.source"),
    ("action", "VARCHAR", "r.event.action"),
    ("reason", "VARCHAR", "r.event.reason"),
    ("outcome", "VARCHAR", "r.event.outcome"),
    ("path", "VARCHAR", "r.file.path"),
    ("bytes", "BIGINT", "r.file.size"),
    ("width", "INTEGER", "r.image.width"),
    ("height", "INTEGER", "r.image.height"),
    ("channels", "INTEGER", "r.image.channels"),
    ("dtype", "VARCHAR", "r.image.dtype"),
    ("format", "VARCHAR", "r.image.format"),
    ("encoder", "VARCHAR", "r.image.encoder.name"),
    ("level", "VARCHAR", "r.log.level"),
    ("message", "VARCHAR", "r.message"),
    ("writer", "VARCHAR", "r.imagelog.writer"),
]

#: Columns of the viewer's ``frames`` table (besides ``n``, ``seg``, ``off``, ``len``).
COLUMNS = [name for name, _, _ in _FIELDS] + ["labels", "meta"]

_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_META = re.compile(r"^(?P<key>[^=!<>~]+?)\s*(?P<op>!=|>=|<=|=|>|<|~)\s*(?P<value>.*)$")


def _json_path(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"field name {key!r}: use letters, digits, '_', '-' and '.' for nesting")
    return "$." + ".".join(f'"{part}"' for part in key.split("."))


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class Filters:
    """What the page filters by; every field is optional. Built from the page URL's query string.

    ``labels`` are ``key=value``; ``meta`` are ``key OP value`` with OP one of
    ``= != > >= < <= ~`` (``~``: contains, any case), or a bare ``key`` (the field is present).
    Nested meta fields are written with dots: ``camera.gain>2``.
    """

    sources: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    meta: tuple[str, ...] = ()
    level: str | None = None
    text: str | None = None
    since: str | None = None
    until: str | None = None

    @classmethod
    def from_query(cls, params: Any) -> Filters:
        """From a multi-dict of query parameters (``source``, ``label``, ``meta``, ``level``, ...)."""

        def many(name: str) -> tuple[str, ...]:
            return tuple(v for v in params.getlist(name) if v.strip())

        def one(name: str) -> str | None:
            value = params.get(name)
            return value.strip() if value and value.strip() else None

        return cls(
            sources=many("source"),
            labels=many("label"),
            meta=many("meta"),
            level=one("level"),
            text=one("q"),
            since=one("since"),
            until=one("until"),
        )

    def where(self, *, events: bool = False) -> tuple[str, list[Any]]:
        """A SQL condition over ``frames`` and its parameters (``ValueError`` on a bad filter)."""
        conds = ["seg >= 0"] if events else ["action = 'logged'"]
        params: list[Any] = []
        if self.sources:
            conds.append(f"source IN ({', '.join('?' * len(self.sources))})")
            params.extend(self.sources)
        for label in self.labels:
            key, sep, value = label.partition("=")
            if not sep:
                conds.append("json_extract_string(labels, ?) IS NOT NULL")
                params.append(_json_path(key.strip()))
                continue
            conds.append("json_extract_string(labels, ?) = ?")
            params += [_json_path(key.strip()), value.strip()]
        for expr in self.meta:
            conds.append(self._meta_condition(expr.strip(), params))
        if self.level:
            conds.append("lower(level) = lower(?)")
            params.append(self.level)
        if self.text:
            conds.append("message ILIKE ? ESCAPE '\\'")
            escaped = re.sub(r"([\\%_])", r"\\\1", self.text)
            params.append(f"%{escaped}%")
        if self.since:
            conds.append("ts >= CAST(? AS TIMESTAMPTZ)::TIMESTAMP")
            params.append(self.since)
        if self.until:
            conds.append("ts < CAST(? AS TIMESTAMPTZ)::TIMESTAMP")
            params.append(self.until)
        return " AND ".join(conds), params

    @staticmethod
    def _meta_condition(expr: str, params: list[Any]) -> str:
        m = _META.match(expr)
        if not m:
            params.append(_json_path(expr))
            return "json_extract_string(meta, ?) IS NOT NULL"
        path, op, value = _json_path(m["key"].strip()), m["op"], m["value"].strip()
        field = "json_extract_string(meta, ?)"
        num = _number(value)
        if op == "~":
            params += [path, "%" + re.sub(r"([\\%_])", r"\\\1", value) + "%"]
            return f"{field} ILIKE ? ESCAPE '\\'"
        if op in ("=", "!=") and num is None:
            params += [path, value]
            return f"{field} {'=' if op == '=' else 'IS DISTINCT FROM'} ?"
        if num is None:
            raise ValueError(f"meta filter {expr!r}: {op} needs a number")
        params += [path, num]
        sql_op = {"=": "=", "!=": "<>"}.get(op, op)
        return f"TRY_CAST({field} AS DOUBLE) {sql_op} ?"


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

    def __init__(self, run: Run, *, db_dir: str | os.PathLike[str] | None = None) -> None:
        self.run = run
        self._tmp = tempfile.TemporaryDirectory(prefix="imagelog-view-", dir=db_dir)
        # on disk (in a temporary folder outside the run) so a million rows need not sit in RAM
        self._con = duckdb.connect(
            str(Path(self._tmp.name) / "index.duckdb"),
            config={"memory_limit": "256MB", "threads": "2"},
        )
        self._con.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ of compacted hours -> UTC
        cols = ", ".join(f'"{n}" {t}' for n, t, _ in _FIELDS)
        self._con.execute(
            f"CREATE TABLE frames (n BIGINT, seg INTEGER, off BIGINT, len INTEGER, {cols}, "
            "labels JSON, meta JSON)"
        )
        self._con.execute("CREATE TABLE purged (id VARCHAR)")
        self._offsets: dict[str, int] = {}  # JSON Lines segment -> bytes read
        self._parquet: set[str] = set()  # compacted hours read
        self._sizes: dict[str, int] = {}  # object stores: sizes at the last listing
        self._fetched: dict[str, int] = {}  # object stores: sizes when last fetched
        self._files = LocalFiles(run.store)
        # the index reads its own chunks and the run's compacted hours, and nothing else
        root = run.store.local_root
        allowed = [
            self._tmp.name,
            os.path.realpath(root) if root else self._files.spill_dir().parent,
        ]
        self._con.execute("SET allowed_directories = ?", [[str(d) for d in allowed]])
        self._con.execute("SET enable_external_access = false")
        self._seg_ids: dict[str, int] = {}
        self._rows = 0
        self._purged = 0
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loading = True
        """True until the first full pass over the index has finished."""
        self.version = 0
        """Bumped whenever rows were added or removed: pages poll it to follow a live run."""

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
        """Stop the background thread and drop the temporary database."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._con.close()
        self._files.close()
        self._tmp.cleanup()

    def refresh(self) -> int:
        """Read what was appended to every segment since the last call; returns the rows added.

        Files are listed by the query engine (``imagelog.query.list_files``), so an hour that
        compaction moved into Parquet is read from there, once, and its segments' rows leave in
        the same transaction.
        """
        with self._lock:
            added = 0
            store = self.run.store
            if not isinstance(store, LocalStore):  # sizes, so unchanged objects are not fetched
                self._sizes = {o.key: o.size for o in store.list(INDEX_PREFIX)}
            files = list_files(store)
            jsonl, parquet = files.keys()
            gone = set(self._offsets) - set(jsonl)
            for key in parquet:
                if key not in self._parquet:
                    hour, writer = hour_of_key(key), Path(key).stem
                    replaced = {
                        k for k in gone if hour_of_key(k) == hour and writer_of(k) == writer
                    }
                    added += self._ingest_parquet(key, replaced)
                    gone -= replaced
            for key in gone:  # retention removed a whole hour
                self._forget(key)
            for key in set(self._parquet) - set(parquet):
                self._forget(key)
            for key in jsonl:
                for chunk, start in self._new_lines(key):
                    added += self._ingest(key, chunk, start)
            if added:
                self.version += 1
            return added

    def _forget(self, key: str) -> None:
        self._con.execute("DELETE FROM frames WHERE seg = ?", [self._seg_ids[key]])
        self._offsets.pop(key, None)
        self._parquet.discard(key)
        self.version += 1

    def _ingest_parquet(self, key: str, replaced: set[str]) -> int:
        """A compacted hour, through the query engine's SQL; the segments it replaces leave."""
        seg = self._seg_ids.setdefault(key, len(self._seg_ids))
        path = self._files.path(key)
        rows = records_sql([], [path])
        cols = ", ".join(
            f'CAST(r."{n}" AS {t})'
            if n in ENGINE_COLUMNS
            else f"CAST({expr.replace('r.', 'j.', 1)} AS {t})"
            for n, t, expr in _FIELDS
        )
        con = self._con
        con.execute("BEGIN")
        for old in replaced:
            con.execute("DELETE FROM frames WHERE seg = ?", [self._seg_ids[old]])
            self._offsets.pop(old, None)
        con.execute(
            f"""INSERT INTO frames
                SELECT {self._rows} + row_number() OVER () - 1, {seg}, NULL, NULL, {cols},
                       r.labels, r.meta
                FROM (SELECT *, from_json(r0.record, '{_TRANSFORM_SPEC}') AS j
                      FROM ({rows}) r0) r"""
        )
        con.execute(
            f"""INSERT INTO purged SELECT unnest(from_json(record->'$.imagelog.purge.ids',
                  '["VARCHAR"]')) FROM ({rows}) WHERE action = 'purged'"""
        )
        n = int(con.execute("SELECT count(*) FROM frames WHERE seg = ?", [seg]).fetchall()[0][0])
        con.execute("COMMIT")
        self._parquet.add(key)
        self._rows += n
        self._purged = int(self._fetch("SELECT count(*) FROM purged")[0][0])
        return n

    def _new_lines(self, key: str) -> Iterator[tuple[bytes, int]]:
        """Chunks of whole new lines of a segment, each with the byte offset it starts at."""
        offset = self._offsets.get(key, 0)
        store = self.run.store
        if isinstance(store, LocalStore):
            try:
                fh = open(store.path_of(key), "rb")  # noqa: SIM115 (closed below, generator)
            except FileNotFoundError:  # KeyOutsideRun included
                return
            with fh:
                while True:
                    fh.seek(offset)
                    want = CHUNK_BYTES if self._rows else FIRST_CHUNK_BYTES
                    data = fh.read(want)
                    while b"\n" not in data and len(data) % want == 0 and data:
                        more = fh.read(want)  # a line longer than a chunk: read to its end
                        if not more:
                            break
                        data += more
                    end = data.rfind(b"\n") + 1
                    if end == 0:
                        return
                    yield data[:end], offset
                    offset += end
                    self._offsets[key] = offset
                    if len(data) < want:
                        return
        size = self._sizes.get(key)
        if size is not None and size == self._fetched.get(key):
            return  # an object store: this part has not changed since it was fetched
        try:
            data = store.get(key)
        except FileNotFoundError:
            return
        self._fetched[key] = len(data)
        end = data.rfind(b"\n") + 1
        while offset < end:
            stop = data.rfind(b"\n", offset, min(end, offset + CHUNK_BYTES)) + 1
            stop = stop if stop > offset else end
            yield data[offset:stop], offset
            offset = stop
            self._offsets[key] = offset

    def _ingest(self, key: str, data: bytes, start: int) -> int:
        seg = self._seg_ids.setdefault(key, len(self._seg_ids))
        self._offsets.setdefault(key, 0)
        buf = np.frombuffer(data, np.uint8)
        ends = np.flatnonzero(buf == 10) + 1  # one past each newline
        starts = np.concatenate([[0], ends[:-1]])
        keep = (ends - starts > 1) & (buf[starts] != 10)  # skip blank lines
        starts, ends = starts[keep], ends[keep]
        if not len(starts):
            return 0
        con = self._con
        # where each line is, by line number (plain lists: no Arrow registration on the way)
        con.execute(
            """CREATE TEMP TABLE _where AS SELECT unnest(range(?)) AS i,
                 unnest(?::BIGINT[]) AS off, unnest(?::INTEGER[]) AS len""",
            [len(starts), (starts + start).tolist(), (ends - starts).tolist()],
        )
        try:
            con.execute("BEGIN")
            try:
                self._insert_fast(data, starts, ends, seg)
            except duckdb.Error:  # a damaged line in the middle: parse line by line instead
                con.execute("ROLLBACK")
                con.execute("BEGIN")
                self._insert_tolerant(data, starts, ends, seg)
            con.execute(
                """INSERT INTO purged SELECT DISTINCT unnest(purge_ids) FROM _parsed
                   WHERE purge_ids IS NOT NULL"""
            )
            con.execute("DROP TABLE _parsed")
            con.execute("COMMIT")
        finally:
            con.execute("DROP TABLE IF EXISTS _where")
        self._rows += len(starts)
        self._purged = int(self._fetch("SELECT count(*) FROM purged")[0][0])
        return len(starts)

    def _select(self, source: str, seg: int) -> str:
        """The SELECT that turns parsed records ``r`` (with line number ``i``) into rows."""
        cols = ", ".join(f'TRY_CAST({expr} AS {t}) AS "{n}"' for n, t, expr in _FIELDS)
        return f"""INSERT INTO frames
            SELECT {self._rows} + w.i, {seg}, w.off, w.len, {cols},
                   r.labels, r.meta FROM ({source}) r JOIN _where w USING (i)"""

    def _insert_fast(self, data: bytes, starts: Any, ends: Any, seg: int) -> None:
        # DuckDB's JSON reader is 2-3x faster than parsing strings in SQL; it needs a file
        chunk = Path(self._tmp.name) / "chunk.jsonl"
        chunk.write_bytes(data)
        self._con.execute(
            f"""CREATE TEMP TABLE _parsed AS SELECT row_number() OVER () - 1 AS i, *,
                  imagelog.purge.ids AS purge_ids
                FROM read_json(?, format='newline_delimited', columns={_COLUMNS_SPEC})""",
            [str(chunk)],
        )
        got = self._con.execute("SELECT count(*) FROM _parsed").fetchall()[0][0]
        if got != len(starts):
            raise duckdb.InvalidInputException(f"{got} records from {len(starts)} lines")
        self._con.execute(self._select("SELECT * FROM _parsed", seg))

    def _insert_tolerant(self, data: bytes, starts: Any, ends: Any, seg: int) -> None:
        lines = [_small(_utf8(data[a:b]))
                 for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]  # fmt: skip
        self._con.execute(
            f"""CREATE TEMP TABLE _parsed AS
                SELECT i, s.*, s.imagelog.purge.ids AS purge_ids FROM (
                  SELECT i, try(json_transform(line, '{_TRANSFORM_SPEC}')) AS s
                  FROM (SELECT unnest(range(?)) AS i, unnest(?::VARCHAR[]) AS line))
                WHERE s IS NOT NULL""",
            [len(lines), lines],
        )
        self._con.execute(self._select("SELECT * FROM _parsed", seg))

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
        cond, params = filters.where(events=events)
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
        sql = f"SELECT count(*) FROM frames WHERE {cond} AND ts < CAST(? AS TIMESTAMPTZ)::TIMESTAMP"
        return int(self._fetch(sql, [*params, ts])[0][0])

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
                WHERE ({cond}) OR (action <> 'logged' AND seg >= 0)""",
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

    def line(self, row: dict[str, Any]) -> bytes:
        """The index line a row came from, as stored (a compacted hour: its ``record``)."""
        key = next(k for k, v in self._seg_ids.items() if v == row["seg"])
        if row["off"] is None:  # Parquet: the engine keeps the whole record
            sql = f"SELECT CAST(record AS VARCHAR) FROM ({records_sql([], [self._files.path(key)])}) WHERE id = ?"
            return str(self._fetch(sql, [row["id"]])[0][0]).encode()
        store = self.run.store
        if isinstance(store, LocalStore):
            with open(store.path_of(key), "rb") as fh:
                fh.seek(int(row["off"]))
                return fh.read(int(row["len"]))
        data = store.get(key)
        return data[int(row["off"]) : int(row["off"]) + int(row["len"])]

    @property
    def rows(self) -> int:
        """Index lines read so far (records and events)."""
        return self._rows


#: Lines longer than this are indexed without ``meta`` and ``labels`` (the frame view shows the
#: line as stored): DuckDB's JSON functions need several times a line's size in memory.
LONG_LINE = 2**20


def _small(line: str | None) -> str | None:
    if line is None or len(line) <= LONG_LINE:
        return line
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    slim = json.dumps(
        {k: v for k, v in rec.items() if k in _SCHEMA and k not in ("meta", "labels")}
    )
    return slim if len(slim) <= LONG_LINE else None


def _utf8(value: bytes | None) -> str | None:
    try:
        return None if value is None else value.decode("utf-8")
    except UnicodeDecodeError:
        return None

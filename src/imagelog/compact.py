"""Compaction: a closed hour's JSON Lines segments of one writer become one Parquet file.

Layout (hive-partitioned, so any engine reads ``index/**/*.parquet`` with a plain glob)::

    index/date=2026-11-24/hour=19/<writer>.parquet

Each file holds the columns of the ``records`` view (docs/query.md; ``labels``, ``meta`` and
``record`` as JSON text), sorted by ``id`` then ``seq``, zstd-compressed, with the segment keys it
replaces in its key-value metadata (``imagelog.segments``).

The file is also the hour's manifest of images, so an engine (Ray, Spark, DuckDB on S3, Daft)
fetches every image by key without listing ``images/``: after the view's columns (as written)
come ``MANIFEST_COLUMNS``: ``uri``, the absolute URI of the image's current file
(``/abs/run/images/...`` or ``s3://bucket/prefix/images/...``), and that file's format, size,
dimensions and dtype, as the records engine has the row (``records.engine.current``: the file a
retention tier re-encoded it to; NULL for a frame that a purge or a thinning removed, on events,
and for paths that leave the run), and ``uri_record``, the record of that file where ``record``
(as written) is not it. Each pass reads the run's tombstones and tier events once and
writes again the compacted files whose manifest they changed (``CompactReport.refreshed``). The
view reads only its own columns, so the extra columns change no reader. Shard members (tiny
frames packed into one object), once the layout has them, add ``shard_uri``, ``shard_offset``
and ``shard_length``.

Order of operations, and why a reader sees each record exactly once at every moment:

1. The segments are read and the file is written whole under a temporary name, then renamed
   (local) or PUT in one request (S3): it exists whole or not at all.
2. Only then are the segments deleted. Between 1 and 2, and after a ``kill -9`` between them,
   readers see both; for a writer and hour with a Parquet file, readers ignore the JSON Lines
   segments (``records.list_files``). The next compaction finds the leftover segments listed in
   the file's metadata and deletes them.

Only closed hours are compacted: hours that ended more than ``GRACE_NS`` ago (as for retention),
so no writer adds lines to them any more. For a writer whose process still runs, that rule holds
whatever ``grace_ns`` and ``now_ns`` say (the real clock, at least ``GRACE_NS``), and its newest
hour is never compacted (a log open in the compacting process counts): it keeps that segment
open and appends to it, and a frame held in a ring, or queued while the store was down, comes
late. A line that reaches an hour after its compaction is never lost: the Parquet file records
the size and SHA-256 of every segment it replaced, and the next compaction merges what a segment
holds beyond that (or a segment made anew) instead of deleting it as a leftover.
Each (hour, writer) is compacted on its own and the
result depends only on the segments, so two compactors that race (two hosts on one bucket, or
``imagelog compact`` run twice) write the same rows to the same key; a compactor that finds a
segment gone while reading it (the other one finished first) leaves that hour alone. Their
manifests may differ if a purge or a tier pass came in between (each applies the rules it read);
the next pass finds the stale one and writes it again. A compactor that writes a file again (late
lines, a stale manifest) leaves it alone if the file changed since it read it. Writers can
restrict compaction to their own segments with ``writers=``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from ._extras import require
from .index.reader import parquet_records
from .index.recover import writer_alive
from .layout import (
    INDEX_PREFIX,
    QUARANTINE_PREFIX,
    compacted_key,
    hour_end_ns,
    hour_of_key,
    is_compacted,
    is_segment,
    summary_key,
    writer_of,
)
from .records import COLUMNS, ORDER, records_sql, sql_str
from .records.columns import sql_list, tiered_sql
from .records.engine import current, rules_of, with_summaries
from .stores.base import Store

__all__ = [
    "GRACE_NS",
    "MANIFEST_COLUMNS",
    "CompactReport",
    "Compacted",
    "compact",
    "manifest_sql",
    "parquet_records",
    "segments_of",
    "uri_sql",
]

#: An hour is closed (compacted) this long after it ended: lines of frames in flight at the
#: rollover are written by then (the same rule retention uses to purge whole hours).
GRACE_NS = 120 * 10**9

_META_KEY = "imagelog.segments"
#: ``{key: [size, sha256]}`` of the bytes each replaced segment held when it was compacted.
_SIZES_KEY = "imagelog.segment_sha256"

#: Columns a compacted file holds after the ``records`` view's (``COLUMNS``), with their types:
#: the image's current file (``uri``) and what it holds, as the records engine has the row
#: (``records.engine.current``: a tier's re-encoded file, NULL for a purged or thinned frame);
#: ``uri_record``: the record that describes that file where ``record`` (as written) does not.
MANIFEST_COLUMNS: dict[str, str] = {
    "uri": "VARCHAR",
    "uri_format": "VARCHAR",
    "uri_bytes": "BIGINT",
    "uri_width": "BIGINT",
    "uri_height": "BIGINT",
    "uri_channels": "BIGINT",
    "uri_dtype": "VARCHAR",
    "uri_record": "VARCHAR",
}


def manifest_sql(root: str, row: str = "", written: str | None = None) -> dict[str, str]:
    """SQL for each manifest column of a current row (``records.engine.current``; ``row``: its
    alias): ``uri`` (``uri_sql``), then the file's fields, NULL where ``uri`` is; ``uri_record``:
    the current record where it differs from the row as written (alias ``written``; without
    one, the row's ``record`` is the current one and ``uri_record`` is NULL)."""
    p = f"{row}." if row else ""
    uri = uri_sql(root, f"{p}path")
    out = {"uri": uri}
    for name in MANIFEST_COLUMNS:
        if name == "uri_record":
            same = "true" if written is None else f"{p}record = {written}.record"
            out[name] = (
                f"CASE WHEN ({uri}) IS NULL OR {same} THEN NULL ELSE CAST({p}record AS VARCHAR) END"
            )
        elif name != "uri":
            out[name] = f"CASE WHEN ({uri}) IS NULL THEN NULL ELSE {p}{name[4:]} END"
    return out


def uri_sql(root: str, path: str = "path") -> str:
    """SQL for a record's image URI: ``root/path``; NULL without a path and for a path that
    leaves the run lexically (absolute, a ``..`` part, NUL: ``LocalStore`` refuses these, and a
    symlink out of the run, when the image is read)."""
    base = sql_str(root.rstrip("/") + "/")
    return (
        f"CASE WHEN {path} IS NULL OR {path} = '' OR starts_with({path}, '/') "
        f"OR starts_with({path}, '\\') OR contains({path}, chr(0)) "
        f"OR list_contains(string_split({path}, '/'), '..') THEN NULL "
        f"ELSE {base} || {path} END"
    )


@dataclasses.dataclass
class Compacted:
    """One writer's hour turned into one Parquet file."""

    hour: str
    writer: str
    key: str
    segments: list[str]
    records: int
    bytes_in: int
    bytes_out: int
    seconds: float


@dataclasses.dataclass
class CompactReport:
    """What a compaction pass did."""

    compacted: list[Compacted] = dataclasses.field(default_factory=list)
    finished: list[str] = dataclasses.field(default_factory=list)
    """Leftover segments of an interrupted compaction, deleted (their records were in Parquet)."""
    skipped: list[str] = dataclasses.field(default_factory=list)
    """Hours (``hour writer``) left alone: still open, or a segment vanished while reading."""
    refreshed: list[str] = dataclasses.field(default_factory=list)
    """Compacted files written again because a purge or a tier changed their images' files."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return {
            "compacted": [dataclasses.asdict(c) for c in self.compacted],
            "finished": self.finished,
            "skipped": self.skipped,
            "refreshed": self.refreshed,
            "records": sum(c.records for c in self.compacted),
            "bytes_in": sum(c.bytes_in for c in self.compacted),
            "bytes_out": sum(c.bytes_out for c in self.compacted),
        }


def segments_of(data: bytes) -> list[str]:
    """The segment keys a compacted file lists in its metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = pq.read_metadata(pa.BufferReader(data)).metadata or {}
    raw = meta.get(_META_KEY.encode())
    return list(json.loads(raw)) if raw else []


def _digests_of(data: bytes) -> dict[str, tuple[int, str]] | None:
    """``{key: (size, sha256)}`` of the segments a compacted file replaced (None: an older file
    that did not record them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = pq.read_metadata(pa.BufferReader(data)).metadata or {}
    raw = meta.get(_SIZES_KEY.encode())
    if not raw:
        return None
    return {k: (int(v[0]), str(v[1])) for k, v in json.loads(raw).items()}


class _Changed(Exception):
    """A compacted file changed while this compactor rewrote it: left to the next pass."""


@dataclasses.dataclass
class _Rules:
    """The run's tombstones and latest tier events as the records engine reads them, and the
    compacted files whose manifest they changed (or that have none yet)."""

    purged: list[str]
    tiered: Any  # a pyarrow Table of the engine's ``_tiered``, or None
    stale: set[str]


def _rules(store: Store, root: str) -> _Rules:
    """The records engine's tables of the whole run (``with_summaries``), and the stale files."""

    def read(con: Any, files: Any, local: Any, _summaries: Any, _big: bool) -> _Rules:
        sql = "SELECT DISTINCT id FROM _purged WHERE id IS NOT NULL"
        purged = [str(i) for (i,) in con.execute(sql).fetchall()]
        tiered = con.sql("SELECT * FROM _tiered").to_arrow_table()
        return _Rules(purged, tiered, _stale(con, local, files.keys()[1], root))

    out: _Rules = with_summaries(store, read)
    return out


def _stale(con: Any, local: Any, keys: list[str], root: str) -> set[str]:
    """Compacted files whose manifest is not what the engine's rules give now: files without
    the manifest columns, and files where a tombstoned or tiered id's row differs."""
    if not keys:
        return set()
    key_of = {local.path(k): k for k in keys}
    names = sql_list(list(MANIFEST_COLUMNS))
    full = [
        str(path)
        for path, n in con.execute(
            f"SELECT file_name, count(DISTINCT name) FROM parquet_schema({sql_list(list(key_of))}) "
            f"WHERE name IN {names.replace('[', '(').replace(']', ')')} GROUP BY 1"
        ).fetchall()
        if n == len(MANIFEST_COLUMNS)
    ]
    stale = {k for p, k in key_of.items() if p not in full}
    if not full or rules_of(con) == (False, False):
        return stale
    cols = ", ".join(f"CAST({c} AS JSON) AS {c}" if t == "JSON" else c for c, t in COLUMNS.items())
    rows = (
        f"SELECT {cols}, {', '.join(MANIFEST_COLUMNS)}, filename AS _file, file_row_number AS _n "
        f"FROM read_parquet({sql_list(full)}, filename=true, file_row_number=true, "
        "hive_partitioning=false) WHERE action = 'logged' AND id IN "
        "(SELECT id FROM _purged UNION SELECT id FROM _tiered)"
    )
    cur = current(con, rows, keep=("_file", "_n"))
    differs = " OR ".join(
        f"h.{name} IS DISTINCT FROM ({expr})"
        for name, expr in manifest_sql(root, "c", written="h").items()
    )
    found = con.execute(
        f"SELECT DISTINCT h._file FROM ({rows}) h LEFT JOIN ({cur}) c "
        f"ON h._file = c._file AND h._n = c._n WHERE {differs}"
    ).fetchall()
    return stale | {key_of[str(p)] for (p,) in found if str(p) in key_of}


def _is_closed(
    hour: str, writer: str, *, now_ns: int, grace_ns: int, newest: str, own: set[str]
) -> bool:
    """Whether no writer adds lines to ``hour`` of ``writer`` any more (see the module doc)."""
    if hour_end_ns(hour) + grace_ns > now_ns:
        return False
    if not writer_alive(writer, own):
        return True
    safe_now = min(now_ns, time.time_ns())
    return hour < newest and hour_end_ns(hour) + max(grace_ns, GRACE_NS) <= safe_now


def compact(
    store: Store,
    *,
    writers: Iterable[str] | None = None,
    now_ns: int | None = None,
    grace_ns: int = GRACE_NS,
    progress: Callable[[int, int], None] | None = None,
) -> CompactReport:
    """Compact every closed hour of a run (of these writers only, if given) into Parquet.

    Safe to run at any time, while writers log, concurrently with readers and with another
    compactor; a pass interrupted at any point (``kill -9`` included) is finished by the next.
    Needs pyarrow (the ``query`` extra).
    """
    require("pyarrow", "query", "compaction")
    if grace_ns < 0:
        raise ValueError(f"grace_ns must not be negative, got {grace_ns}")
    now_ns = time.time_ns() if now_ns is None else now_ns
    own = None if writers is None else set(writers)
    jsonl: dict[tuple[str, str], list[tuple[str, int]]] = {}
    parquet: dict[tuple[str, str], str] = {}
    for info in store.list(INDEX_PREFIX):
        hour = hour_of_key(info.key)
        if hour is None:
            continue
        if is_compacted(info.key):
            parquet[(hour, writer_of(info.key))] = info.key
        elif is_segment(info.key):
            jsonl.setdefault((hour, writer_of(info.key)), []).append((info.key, info.size))
    report = CompactReport()
    groups = sorted(g for g in jsonl if own is None or g[1] in own)
    # the manifest applies the records engine's rules as they are now; files they changed since
    # are written again below
    rules = _rules(store, store.url) if groups or parquet else _Rules([], None, set())
    from ._lifecycle import open_writers

    open_here = open_writers()  # logs open in this process are live writers too
    newest: dict[str, str] = {}
    for hour, writer in groups:
        newest[writer] = max(hour, newest.get(writer, ""))
    for done, (hour, writer) in enumerate(groups):
        if progress is not None:
            progress(done, len(groups))
        if not _is_closed(
            hour, writer, now_ns=now_ns, grace_ns=grace_ns, newest=newest[writer], own=open_here
        ):
            report.skipped.append(f"{hour} {writer}")
            continue
        segments = sorted(jsonl[(hour, writer)])
        existing = parquet.get((hour, writer))
        try:
            result = _compact_one(store, hour, writer, segments, existing, rules,
                                  refresh=existing in rules.stale)  # fmt: skip
        except (FileNotFoundError, _Changed):  # another compactor finished first
            report.skipped.append(f"{hour} {writer}")
            continue
        if isinstance(result, Compacted):
            report.compacted.append(result)
        else:
            report.finished.extend(result)
    for key in sorted(rules.stale):
        hour, writer = str(hour_of_key(key)), writer_of(key)
        if (hour, writer) in jsonl or (own is not None and writer not in own):
            continue  # compacted above with the rules, or left alone
        try:
            _compact_one(store, hour, writer, [], key, rules, refresh=True)
        except (FileNotFoundError, _Changed):
            report.skipped.append(f"{hour} {writer}")
            continue
        report.refreshed.append(key)
    if progress is not None:
        progress(len(groups), len(groups))
    return report


def _compact_one(
    store: Store,
    hour: str,
    writer: str,
    segments: list[tuple[str, int]],
    existing: str | None,
    rules: _Rules,
    *,
    refresh: bool = False,
) -> Compacted | list[str]:
    """Write the Parquet file of one writer's hour from its segments and its file (if any);
    ``refresh``: write the file again with no new segment (its manifest is stale)."""
    keys = [k for k, _ in segments]
    old_data = store.get(existing) if existing is not None else None
    listed = set(segments_of(old_data)) if old_data is not None else set()
    digests = (_digests_of(old_data) if old_data is not None else None) or {}
    started = time.perf_counter()
    import duckdb

    with tempfile.TemporaryDirectory(prefix="imagelog-compact-") as tmp:
        paths, read, leftovers = [], {}, []
        for n, key in enumerate(keys):
            path = os.path.join(tmp, f"{n}.jsonl")
            if key in listed and key not in digests:  # a file that did not record digests:
                read[key] = _stream_digest(store, key)  # listed means held
                leftovers.append(key)
                continue
            read[key], copied = _snapshot(store, key, path, digests.get(key))
            if not copied:
                leftovers.append(key)  # an interrupted compaction: the file holds these lines
                continue
            _quarantine_torn_tail(store, key, path)
            paths.append(path)
        if not paths and not (refresh and old_data is not None):
            store.delete([*leftovers, summary_key(hour, writer)])
            return leftovers
        parquet_paths = []
        if old_data is not None:  # late lines after a compaction: merge them in
            old_path = os.path.join(tmp, "old.parquet")
            Path(old_path).write_bytes(old_data)
            parquet_paths.append(old_path)
        out = os.path.join(tmp, "out.parquet")
        cols = ", ".join(
            f"CAST(h.{name} AS VARCHAR) AS {name}" if typ == "JSON" else f"h.{name}"
            for name, typ in COLUMNS.items()
        )
        replaced = json.dumps(sorted(listed | set(keys)))
        sizes = json.dumps({**{k: list(v) for k, v in digests.items()},
                            **{k: list(v) for k, v in read.items()}}, sort_keys=True)  # fmt: skip
        con = duckdb.connect(
            config={"memory_limit": "512MB", "autoinstall_known_extensions": False}
        )
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET enable_progress_bar = false")
            con.execute("SET threads = 1")  # a background chore: one core, bounded memory
            con.execute(f"SET temp_directory = {sql_str(os.path.join(tmp, 'spill'))}")
            _load_rules(con, rules)
            every = records_sql(paths, parquet_paths, strict=True)
            if rules_of(con) == (False, False):  # no rule to apply: the rows stream through
                source, manifest = f"({every}) h", manifest_sql(store.url, "h")
            else:  # each row beside itself as the engine's rules make it
                con.execute(
                    f"CREATE TABLE _rows AS SELECT *, row_number() OVER () AS _n FROM ({every})"
                )
                cur = current(con, "SELECT * FROM _rows", keep=("_n",))
                source = f"_rows h LEFT JOIN ({cur}) c ON h._n = c._n"
                manifest = manifest_sql(store.url, "c", written="h")
            cols += "".join(f", {e} AS {n}" for n, e in manifest.items())
            con.execute(
                f"COPY (SELECT * FROM (SELECT {cols} FROM {source}) ORDER BY {ORDER}) "
                f"TO {sql_str(out)} (FORMAT parquet, COMPRESSION zstd, "
                f"ROW_GROUP_SIZE 65536, KV_METADATA {{'{_META_KEY}': {sql_str(replaced)}, "
                f"'{_SIZES_KEY}': {sql_str(sizes)}}})"
            )
        finally:
            con.close()
        data = Path(out).read_bytes()
    rows = _num_rows(data)
    key = compacted_key(hour, writer)
    if old_data is not None and existing is not None and store.get(existing) != old_data:
        raise _Changed(existing)  # another compactor wrote it meanwhile: theirs stays
    store.put(key, data, sync=True)  # whole or nothing; only then are the segments removed
    # a segment that grew meanwhile stays: the next pass merges what it holds beyond this read
    gone = [k for k in keys if _unchanged(store, k, read[k])]
    store.delete([*gone, summary_key(hour, writer)])  # the summary describes what is gone
    return Compacted(
        hour=hour,
        writer=writer,
        key=key,
        segments=keys,
        records=int(rows),
        bytes_in=sum(size for _, size in segments),
        bytes_out=len(data),
        seconds=round(time.perf_counter() - started, 3),
    )


def _load_rules(con: Any, rules: _Rules) -> None:
    """The engine's ``_purged`` and ``_tiered`` tables in a compaction's connection."""
    con.execute("CREATE TABLE _purged (id VARCHAR)")
    if rules.purged:
        con.execute("INSERT INTO _purged SELECT unnest(?::VARCHAR[])", [rules.purged])
    con.execute(f"CREATE TABLE _tiered AS {tiered_sql([], [])}")
    if rules.tiered is not None and rules.tiered.num_rows:  # (registering loads pandas)
        con.register("_tiered_in", rules.tiered)
        con.execute("INSERT INTO _tiered SELECT * FROM _tiered_in")


#: Segments are copied and hashed in pieces of this size (an hour's segment may be large).
_CHUNK = 1 << 22


def _open(store: Store, key: str) -> BinaryIO:
    root = store.local_root
    if root is not None:
        return open(root / key, "rb")
    return io.BytesIO(store.get(key))


def _snapshot(
    store: Store, key: str, dest: str, held: tuple[int, str] | None
) -> tuple[tuple[int, str], int]:
    """Copy the bytes of a segment that the compacted file does not hold yet to ``dest``: all of
    them, or what follows ``held`` (size, SHA-256) when the segment starts with those bytes (it
    grew after a compaction read it). Returns the (size, SHA-256) of the whole segment as read,
    and how many bytes were copied. What is copied is exactly what was hashed."""
    whole = hashlib.sha256()
    size = 0
    with _open(store, key) as src, open(dest, "wb") as out:
        if held is not None:
            want, sha = held
            prefix = hashlib.sha256()
            while size < want and (chunk := src.read(min(_CHUNK, want - size))):
                prefix.update(chunk)
                whole.update(chunk)
                size += len(chunk)
            if size != want or prefix.hexdigest() != sha:  # a segment made anew: copy it all
                src.seek(0)
                whole, size = hashlib.sha256(), 0
        copied = 0
        while chunk := src.read(_CHUNK):
            whole.update(chunk)
            out.write(chunk)
            size += len(chunk)
            copied += len(chunk)
    return (size, whole.hexdigest()), copied


def _stream_digest(store: Store, key: str) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with _open(store, key) as src:
        while chunk := src.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _unchanged(store: Store, key: str, read: tuple[int, str]) -> bool:
    try:
        return _stream_digest(store, key) == read
    except FileNotFoundError:
        return False


def _num_rows(data: bytes) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return int(pq.read_metadata(pa.BufferReader(data)).num_rows)


def _quarantine_torn_tail(store: Store, key: str, path: str) -> None:
    """Keep the bytes of a torn last line (left out of the Parquet file) in ``quarantine/``."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
    cut = data.rfind(b"\n") + 1
    store.put(f"{QUARANTINE_PREFIX}{key.removeprefix(INDEX_PREFIX)}.torn", data[cut:])

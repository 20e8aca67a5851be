"""The ``records`` view: its columns, their types, and the SQL that reads them from index files.

Every JSON line is read as text and its fields are extracted by JSON path, so ``meta`` keys that
differ from line to line or file to file never meet DuckDB's struct inference. A torn line (a
writer killed mid-append), a line that is not a JSON object and a line that is not UTF-8 are left
out (``warn_skipped`` names them). Lines of any size up to ``MAX_LINE_BYTES`` are read.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "COLUMNS",
    "MAX_LINE_BYTES",
    "ORDER",
    "SUPERSEDED",
    "current_record_sql",
    "empty_sql",
    "json_reader_sql",
    "jsonl_sql",
    "latest_tiered_sql",
    "lines_records_sql",
    "lines_sql",
    "parquet_sql",
    "purged_sql",
    "records_sql",
    "sql_list",
    "sql_str",
    "superseded",
    "tiered_events_sql",
    "tiered_sql",
    "without_purged",
]

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

#: Where each column comes from in a JSON line (``id``: the image's, else the event's;
#: ``record`` is the line itself).
PATHS: dict[str, str] = {
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

#: The order of records everywhere: by id (UUIDv7: log time, then call order), then ``seq``.
ORDER = "id, seq"

#: The longest index line read (a record with megabytes of metadata); longer lines are skipped
#: with a warning naming the file and line. Reads take lines up to DuckDB's default (2 MB) first,
#: with small buffers; a read that met a longer line is run again with ``big=True``.
MAX_LINE_BYTES = 256 * 2**20


def sql_str(s: str) -> str:
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def sql_list(paths: Sequence[str]) -> str:
    """A SQL list of string literals."""
    return "[" + ", ".join(sql_str(p) for p in paths) + "]"


def lines_sql(paths: Sequence[str], *, strict: bool = False, big: bool = False) -> str:
    """Each line of these files as one VARCHAR ``line`` (no CSV rules: no quotes, no escapes).

    Lines that are not UTF-8 or too long (2 MB; ``big``: ``MAX_LINE_BYTES``) are skipped and
    kept in DuckDB's ``reject_errors`` table (``engine.warn_skipped`` reports them); ``strict``:
    they fail the read (compaction, which removes the segments it read, must not leave a line
    behind).
    """
    skip = "" if strict else ", ignore_errors=true, store_rejects=true"
    size = f", max_line_size={MAX_LINE_BYTES}" if big else ""
    return (
        f"read_csv({sql_list(paths)}, columns={{'line': 'VARCHAR'}}, delim='\\x01', quote='', "
        "escape='', header=false, auto_detect=false, null_padding=false, strict_mode=false"
        f"{size}{skip})"
    )


def lines_records_sql(
    lines: str, *, keep: Sequence[str] = (), extra: dict[str, str] | None = None
) -> str:
    """The ``records`` columns of JSON lines from any SQL source with a VARCHAR column ``line``
    (e.g. ``SELECT unnest(?) AS line`` for lines read by a cursor); ``keep``: columns of the
    source to pass through, after the records' columns; ``extra``: more VARCHAR columns by
    JSON path, from the same parse."""
    return jsonl_sql((), lines=lines, keep=keep, extra=extra)


def jsonl_sql(
    paths: Sequence[str],
    *,
    lines: str | None = None,
    strict: bool = False,
    keep: Sequence[str] = (),
    big: bool = False,
    extra: dict[str, str] | None = None,
) -> str:
    """Typed columns from JSON lines read as text (never struct inference), bad lines left out.

    Every column comes from one ``json_extract_string`` of every path (one parse per line;
    measured 2.5x faster than a parse per column for ``stats``; ``labels`` and ``meta`` come out
    as their JSON text); ``record`` (the line) is parsed only by the queries that use it.
    """
    names = list(PATHS)
    every = [PATHS[n] for n in names] + ["$.image.id", "$.event.id", "$.labels", "$.meta"]
    more = dict(extra or {})
    every += list(more.values())
    cols = []
    for name, typ in COLUMNS.items():
        if name == "id":
            expr = f"coalesce(j[{len(names) + 1}], j[{len(names) + 2}])"
        elif name in ("labels", "meta"):  # the object's text, from the same parse
            expr = f"CAST(j[{len(names) + (3 if name == 'labels' else 4)}] AS JSON)"
        elif name == "record":
            expr = "TRY_CAST(line AS JSON)"  # evaluated before the filter, on any line
        else:
            ji = f"j[{names.index(name) + 1}]"
            expr = ji if typ == "VARCHAR" else f"TRY_CAST({ji} AS {typ})"
        cols.append(f"{expr} AS {name}")
    cols += [f'j[{len(names) + 5 + i}] AS "{name}"' for i, name in enumerate(more)]
    cols += [f'"{name}"' for name in keep]
    passed = "".join(f', "{name}"' for name in keep)
    source = f"({lines})" if lines is not None else lines_sql(paths, strict=strict, big=big)
    # the parse sits behind the CASE: a filter DuckDB pushes down never meets a bad line
    return (
        f"SELECT {', '.join(cols)} FROM (SELECT line{passed}, CASE WHEN "
        "starts_with(ltrim(line), '{') AND json_valid(line) THEN "
        f"json_extract_string(line, {sql_list(every)}) END AS j FROM {source}) WHERE j IS NOT NULL"
    )


def _struct(paths: dict[str, str]) -> dict[str, object]:
    """A nested spec of JSON paths (``$.a.b``, ``$."@x"``) -> DuckDB types."""
    tree: dict[str, object] = {}
    for path, typ in paths.items():
        parts = [p.strip('"') for p in path.removeprefix("$.").split(".")]
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[parts[-1]] = typ
    return tree


def _duck_type(spec: object) -> str:
    if isinstance(spec, str):
        return spec
    assert isinstance(spec, dict)
    return "STRUCT(" + ", ".join(f'"{k}" {_duck_type(v)}' for k, v in spec.items()) + ")"


def _access(path: str) -> str:
    return "r." + ".".join(f'"{p.strip(chr(34))}"' for p in path.removeprefix("$.").split("."))


def json_reader_sql(path: str, *, extra: dict[str, str] | None = None) -> str:
    """The ``records`` columns (without ``record``), ``extra`` columns by JSON path and
    ``purge_ids`` (what a ``purged`` event lists) of a file of whole JSON lines, through DuckDB's
    JSON reader with these columns given (no inference; several times faster than extracting
    paths from text). Rows come in line order; a line the reader cannot take is dropped, so a
    caller that numbers lines compares the count and falls back to ``lines_records_sql``."""
    more = dict(extra or {})
    leaves = dict.fromkeys([*PATHS.values(), "$.image.id", "$.event.id", *more.values()], "VARCHAR")
    leaves |= {"$.labels": "JSON", "$.meta": "JSON", "$.imagelog.purge.ids": "VARCHAR[]"}
    spec = _struct(leaves)
    columns = "{" + ", ".join(f"'{k}': '{_duck_type(v)}'" for k, v in spec.items()) + "}"
    cols = []
    for name, typ in COLUMNS.items():
        if name == "record":
            continue
        if name == "id":
            expr = f"coalesce({_access('$.image.id')}, {_access('$.event.id')})"
        elif name in ("labels", "meta"):
            expr = _access(f"$.{name}")
        else:
            ji = _access(PATHS[name])
            expr = ji if typ == "VARCHAR" else f"TRY_CAST({ji} AS {typ})"
        cols.append(f'{expr} AS "{name}"')
    cols += [f'{_access(p)} AS "{n}"' for n, p in more.items()]
    cols.append(f"{_access('$.imagelog.purge.ids')} AS purge_ids")
    return (
        f"SELECT {', '.join(cols)} FROM read_json({sql_str(path)}, format='newline_delimited', "
        f"columns={columns}) r"
    )


def parquet_sql(paths: Sequence[str]) -> str:
    """The ``records`` columns of compacted hours (``layout.compacted_key``)."""
    cols = ", ".join(
        f"CAST({name} AS JSON) AS {name}" if typ == "JSON" else name
        for name, typ in COLUMNS.items()
    )
    return f"SELECT {cols} FROM read_parquet({sql_list(paths)}, hive_partitioning=false)"


def empty_sql() -> str:
    """No rows, the ``records`` columns."""
    cols = ", ".join(f"CAST(NULL AS {typ}) AS {name}" for name, typ in COLUMNS.items())
    return f"SELECT {cols} WHERE false"


def records_sql(
    jsonl: Sequence[str], parquet: Sequence[str], *, strict: bool = False, big: bool = False
) -> str:
    """SQL for every row (events included, purges not applied) of these local files."""
    parts = []
    if jsonl:
        parts.append(jsonl_sql(jsonl, strict=strict, big=big))
    if parquet:
        parts.append(parquet_sql(parquet))
    return " UNION ALL ".join(parts) if parts else empty_sql()


#: The ids a tombstone lists: ``purged`` events (``imagelog.purge.ids``) and ``thinned``
#: summaries of retention tiers (``imagelog.thinned.ids``).
_PURGE_IDS = (
    "unnest(from_json(coalesce(j->'$.imagelog.purge.ids', j->'$.imagelog.thinned.ids'), "
    "'[\"VARCHAR\"]'))"
)
_TOMBSTONES = "('purged', 'thinned')"


def purged_sql(
    jsonl: Sequence[str], parquet: Sequence[str], *, lines: str | None = None, big: bool = False
) -> str:
    """The ids that ``purged`` events and ``thinned`` summaries list (tombstones): a text search
    first, so other lines are not parsed. ``lines``: any SQL source of a VARCHAR ``line`` instead."""
    parts = []
    if jsonl or lines is not None:
        source = f"({lines})" if lines is not None else lines_sql(jsonl, big=big)
        parts.append(
            f"SELECT {_PURGE_IDS} AS id FROM (SELECT TRY_CAST(line AS JSON) AS j FROM {source} "
            "WHERE (contains(line, '\"purged\"') OR contains(line, '\"thinned\"')) "
            f"AND json_valid(line)) WHERE j->>'$.event.action' IN {_TOMBSTONES}"
        )
    if parquet:
        parts.append(
            f"SELECT {_PURGE_IDS} AS id FROM (SELECT CAST(record AS JSON) AS j FROM "
            f"read_parquet({sql_list(parquet)}, hive_partitioning=false) "
            f"WHERE action IN {_TOMBSTONES})"
        )
    return " UNION ALL ".join(parts) if parts else "SELECT CAST(NULL AS VARCHAR) AS id WHERE false"


#: The columns a ``tiered`` event supersedes, and where its ``imagelog.tiered`` holds them.
SUPERSEDED: dict[str, str] = {
    c: PATHS[c] for c in ("path", "bytes", "width", "height", "channels", "dtype", "format")
}


def tiered_events_sql(
    jsonl: Sequence[str], parquet: Sequence[str], *, lines: str | None = None
) -> str:
    """Every ``tiered`` event (retention tiers, ``imagelog.tiers``): ``id`` (the image's),
    ``created``, ``eid`` (the event's), the superseded columns, and ``patch``, the JSON merge
    patch that makes the image's ``logged`` record describe its file then (``file``, ``image``,
    ``imagelog.tier``). A text search first, so other lines are not parsed. ``lines``: any SQL
    source of a VARCHAR ``line`` instead of files."""
    parts = []
    if jsonl or lines is not None:
        source = f"({lines})" if lines is not None else lines_sql(jsonl)
        parts.append(
            f"SELECT TRY_CAST(line AS JSON) AS j FROM {source} "
            "WHERE contains(line, '\"tiered\"') AND json_valid(line)"
        )
    if parquet:
        parts.append(
            "SELECT CAST(record AS JSON) AS j FROM "
            f"read_parquet({sql_list(parquet)}, hive_partitioning=false) WHERE action = 'tiered'"
        )
    if not parts:
        parts.append("SELECT CAST(NULL AS JSON) AS j WHERE false")
    cols = ", ".join(f"TRY_CAST(t->>'{p}' AS {COLUMNS[c]}) AS {c}" for c, p in SUPERSEDED.items())
    patch = (
        "json_object('file', t->'$.file', 'image', t->'$.image', 'imagelog', json_object('tier', "
        "json_object('step', t->'$.step', 'after', t->'$.after', 'event', eid)))"
    )
    return (
        f"SELECT id, created, eid, {cols}, CAST({patch} AS JSON) AS patch FROM ("
        "SELECT j->>'$.imagelog.tiered.image_id' AS id, j->>'$.event.created' AS created, "
        "j->>'$.event.id' AS eid, j->'$.imagelog.tiered' AS t "
        f"FROM ({' UNION ALL '.join(parts)}) WHERE j->>'$.event.action' = 'tiered') "
        "WHERE id IS NOT NULL"
    )


def latest_tiered_sql(events: str) -> str:
    """The latest of ``tiered_events_sql`` rows for each id: the one that holds."""
    return f"SELECT DISTINCT ON (id) * FROM ({events}) ORDER BY id, created DESC, eid DESC"


def tiered_sql(jsonl: Sequence[str], parquet: Sequence[str]) -> str:
    """The latest ``tiered`` event of each image id in these files (``latest_tiered_sql``)."""
    return latest_tiered_sql(tiered_events_sql(jsonl, parquet))


def current_record_sql(record: str, patch: str) -> str:
    """A ``logged`` record made current by a ``tiered`` event's ``patch``: its ``file`` and
    ``image`` replaced whole, ``imagelog.tier`` added."""
    return f'CAST(json_merge_patch({record}, \'{{"file":null,"image":null}}\', {patch}) AS JSON)'


def superseded(rows: str, tiered: str = "_tiered", keep: Sequence[str] = ()) -> str:
    """Rows whose ``logged`` records a ``tiered`` event superseded, made current: the file, the
    image fields and ``record`` as the latest event says (a hash join against the table of
    latest events, ``tiered_sql``, streaming the rows). ``keep``: columns of ``rows`` to pass
    through, after the records' columns."""
    cols = []
    for name in COLUMNS:
        if name in SUPERSEDED:
            cols.append(f"coalesce(t.{name}, h.{name}) AS {name}")
        elif name == "record":
            current = current_record_sql("h.record", "t.patch")
            cols.append(f"CASE WHEN t.id IS NULL THEN h.record ELSE {current} END AS record")
        else:
            cols.append(f"h.{name}")
    cols += [f'h."{name}"' for name in keep]
    return (
        f"SELECT {', '.join(cols)} FROM ({rows}) h LEFT JOIN {tiered} t "
        "ON h.id = t.id AND h.action = 'logged'"
    )


def without_purged(rows: str, purged: str = "_purged") -> str:
    """Rows minus the ``logged`` rows of purged ids: a hash join against the (small) id table,
    streaming the rows (a correlated NOT EXISTS made DuckDB materialise every row)."""
    return (
        f"SELECT h.* FROM ({rows}) h LEFT JOIN (SELECT DISTINCT id FROM {purged}) p "
        "ON h.id = p.id AND h.action = 'logged' WHERE p.id IS NULL"
    )

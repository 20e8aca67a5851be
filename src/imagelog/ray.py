"""Ray Data for a run (the ``ray`` extra): records as a Dataset, pixels decoded in the workers.

``read_run(url, where=...)`` lists the run's index once (never ``images/``) and makes one read
task per index hour. Each task reads its hour's compacted Parquet files and JSON Lines segments
with the records engine's SQL (the same columns, filters, time rule and purge rule as
``Run.records()``), the condition pushed into DuckDB's scan of the files, and yields one Arrow
block. ``load_images`` is a ``map_batches`` function that adds an ``image`` column: each record's
pixels as ``Run.load`` returns them (JPEG XL, 16-bit, float and camera formats included), decoded
by imagelog's codecs inside the workers::

    import ray, imagelog.ray
    ds = imagelog.ray.read_run("s3://bucket/line3", where="source = 'cam1'")
    ds = ds.map_batches(imagelog.ray.load_images, batch_size=32)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._extras import require
from .compact import MANIFEST_COLUMNS, manifest_sql
from .export import ExportReport
from .records import COLUMNS, ORDER, LocalFiles, check_where, filters_sql, list_files
from .records.columns import purged_sql, records_sql, tiered_sql
from .records.engine import MEMORY_LIMIT, _new_connection, current, warn_skipped

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

    from .stores import Store

__all__ = ["COLUMNS_OUT", "export", "load_images", "read_run"]

#: The columns of ``read_run``'s Dataset: the ``records`` view's, then the manifest's (``uri``,
#: the image's absolute URI, and its file's fields, as compaction writes them).
COLUMNS_OUT: tuple[str, ...] = (*COLUMNS, *MANIFEST_COLUMNS)

_RETRIES = 5


def _store(url: str, storage_options: dict[str, Any] | None) -> Store:
    from . import read

    return read(url, storage_options=storage_options).store


def read_run(
    url: str,
    *,
    where: str | None = None,
    source: str | None = None,
    since: str | None = None,
    until: str | None = None,
    include_events: bool = False,
    columns: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> ray.data.Dataset:
    """A Ray Dataset of a run's records (docs/fleet.md): one read task per index hour.

    The filters are ``Run.records()``'s (``where``: SQL on the ``records`` columns; by default
    only stored images, ``include_events=True`` adds drops, purges and failures); ``columns``
    picks among ``COLUMNS_OUT`` (``labels``, ``meta`` and ``record`` are JSON text). Rows of an
    hour come in the records' order (``id``, ``seq``). The index is listed once, here; the
    images prefix never is. Bad filters and unknown columns fail here, before Ray runs anything.
    """
    require("ray.data", "ray", "imagelog.ray")
    import ray

    cond, params = filters_sql(source=source, since=since, until=until,
                               include_events=include_events, where=where)  # fmt: skip
    check_where(where)
    cols = list(COLUMNS_OUT if columns is None else columns)
    unknown = [c for c in cols if c not in COLUMNS_OUT]
    if unknown or not cols:
        raise ValueError(
            f"unknown column(s) {', '.join(map(repr, unknown)) or '(none given)'}: "
            f"choose among {', '.join(COLUMNS_OUT)}"
        )
    store = _store(url, storage_options)
    root = store.url
    files = list_files(store)
    hours = files.hours
    if not hours:
        return ray.data.from_arrow(_empty(cols))
    opts = dict(storage_options or {})
    # the tombstones of the whole run first (a purge may name images of any earlier hour)
    purge = ray.remote(num_cpus=1)(_hour_purged)
    found: list[list[str]] = ray.get([purge.remote(root, opts, h, files.keys([h])) for h in hours])
    ids = ray.put(sorted({i for part in found for i in part}))
    hours_ = _datasource(root, opts, files.keys, hours, cond, params, ids, cols)
    dataset: ray.data.Dataset = ray.data.read_datasource(hours_, override_num_blocks=len(hours))
    return dataset


def _empty(cols: list[str]) -> pa.Table:
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.execute("SET TimeZone = 'UTC'")
        return _arrow(con, _select(cols, "/"), "(" + records_sql([], []) + ")", [])
    finally:
        con.close()


def _select(cols: list[str], root: str) -> str:
    out = []
    manifest = manifest_sql(root)  # the rows are current (engine.current) already
    for name in cols:
        if name in MANIFEST_COLUMNS:
            out.append(f"{manifest[name]} AS {name}")
        elif COLUMNS[name] == "JSON":
            out.append(f"CAST({name} AS VARCHAR) AS {name}")
        else:
            out.append(name)
    return ", ".join(out)


def _arrow(con: Any, select: str, rows: str, params: list[Any], cond: str = "true") -> pa.Table:
    sql = f"SELECT {select} FROM {rows} h WHERE {cond} ORDER BY {ORDER}"
    table: pa.Table = con.sql(sql, params=params or None).to_arrow_table()
    return table


def _on_hour_files(
    root: str,
    opts: dict[str, Any],
    hour: str,
    keys: tuple[list[str], list[str]],
    fn: Any,
) -> Any:
    """``fn(connection, local paths of the JSON Lines, of the Parquet files)`` for one hour,
    listed again if a compaction replaced its segments since the driver's listing."""
    import duckdb

    store = _store(root, opts or None)
    jsonl, parquet = keys
    for attempt in range(_RETRIES):
        with LocalFiles(store, pin=True) as local:
            con = _new_connection(MEMORY_LIMIT, local)
            try:
                out = fn(con, [local.path(k) for k in jsonl], [local.path(k) for k in parquet])
                warn_skipped(con, local)
                return out
            except (duckdb.IOException, FileNotFoundError):
                if attempt == _RETRIES - 1:
                    raise
                jsonl, parquet = list_files(store).keys([hour])
            finally:
                con.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _hour_purged(
    root: str, opts: dict[str, Any], hour: str, keys: tuple[list[str], list[str]]
) -> list[str]:
    """The ids that one hour's ``purged`` events list (the engine's tombstone SQL)."""

    def ids(con: Any, jsonl: list[str], parquet: list[str]) -> list[str]:
        sql = f"SELECT DISTINCT id FROM ({purged_sql(jsonl, parquet)}) WHERE id IS NOT NULL"
        return [str(i) for (i,) in con.execute(sql).fetchall()]

    out: list[str] = _on_hour_files(root, opts, hour, keys, ids)
    return out


def _read_hour(
    root: str,
    opts: dict[str, Any],
    hour: str,
    keys: tuple[list[str], list[str]],
    cond: str,
    params: list[Any],
    purged: Any,
    cols: list[str],
) -> pa.Table:
    """One hour's matching records as an Arrow table, through the engine's SQL (``purged``:
    a Ray reference to the run's tombstones; tier events are read from the hour itself)."""
    import ray

    ids: list[str] = ray.get(purged) if isinstance(purged, ray.ObjectRef) else purged

    def read(con: Any, jsonl: list[str], parquet: list[str]) -> pa.Table:
        # the engine's rules (engine.current): the run's tombstones, and the tier events, which
        # a tier pass writes into the frame's own hour
        con.execute("CREATE OR REPLACE TABLE _purged (id VARCHAR)")
        if ids:
            con.execute("INSERT INTO _purged SELECT unnest(?::VARCHAR[])", [ids])
        con.execute(f"CREATE OR REPLACE TABLE _tiered AS {tiered_sql(jsonl, parquet)}")
        rows = current(con, records_sql(jsonl, parquet))
        return _arrow(con, _select(cols, root), f"({rows})", params, cond)

    table: pa.Table = _on_hour_files(root, opts, hour, keys, read)
    return table


_DATASOURCE: list[type] = []


def _datasource(*args: Any) -> Any:
    """The Datasource of one read task per hour (its class made once Ray is imported)."""
    if not _DATASOURCE:
        _DATASOURCE.append(_make_datasource_class())
    return _DATASOURCE[0](*args)


def _make_datasource_class() -> type:
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class HoursDatasource(Datasource):
        """One read task per index hour of a run."""

        def __init__(
            self,
            root: str,
            opts: dict[str, Any],
            keys_of: Any,
            hours: list[str],
            cond: str,
            params: list[Any],
            purged: list[str],
            cols: list[str],
        ) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self._root, self._opts, self._hours = root, opts, hours
            self._keys = {h: keys_of([h]) for h in hours}
            self._cond, self._params, self._purged, self._cols = cond, params, purged, cols

        def get_name(self) -> str:
            return "ImagelogHours"

        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
        ) -> list[Any]:
            tasks = []
            for hour in self._hours:
                args = (self._root, self._opts, hour, self._keys[hour], self._cond,
                        self._params, self._purged, self._cols)  # fmt: skip

                def read(args: tuple[Any, ...] = args) -> list[pa.Table]:
                    return [_read_hour(*args)]

                meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None,
                                     input_files=tuple(self._keys[hour][0] + self._keys[hour][1]))  # fmt: skip
                tasks.append(ReadTask(read, meta))
            return tasks

    return HoursDatasource


def load_images(
    batch: dict[str, np.ndarray[Any, Any]],
    *,
    storage_options: dict[str, Any] | None = None,
    missing: str = "raise",
) -> dict[str, np.ndarray[Any, Any]]:
    """A ``map_batches`` function (``batch_format="numpy"``) that adds ``image``: each record's
    pixels, with the dtype and shape ``Run.load`` gives, decoded by imagelog's codecs. A column
    holds one dtype: a run that mixes them (8-bit frames, 16-bit depth, float) is read one
    dtype at a time (``where="dtype = 'uint16'"``); shapes may differ.

    Needs the ``uri`` and ``record`` columns of ``read_run``. ``storage_options`` (pass them as
    ``fn_kwargs``) reach the store as for ``imagelog.read``; ``missing="skip"`` leaves out rows
    whose image is gone from storage or lies outside the run (the default raises, naming it).
    """
    if missing not in ("raise", "skip"):
        raise ValueError(f"missing must be 'raise' or 'skip', got {missing!r}")
    if "uri" not in batch or "record" not in batch:
        raise ValueError(
            "load_images needs the 'uri' and 'record' columns of imagelog.ray.read_run, "
            'in batches of batch_format="numpy"'
        )
    from .errors import KeyOutsideRun
    from .fleet import load_pixels

    images: list[np.ndarray[Any, Any]] = []
    keep: list[int] = []
    for i, (uri, text) in enumerate(zip(batch["uri"], batch["record"], strict=True)):
        try:
            images.append(load_pixels(uri, str(text), storage_options=storage_options))
        except (FileNotFoundError, KeyOutsideRun):
            if missing == "skip":
                continue
            raise
        keep.append(i)
    out = {name: np.asarray(col)[keep] for name, col in batch.items()}
    dtypes = sorted({str(a.dtype) for a in images})
    if len(dtypes) > 1:  # Arrow holds one tensor dtype per column
        raise ValueError(
            f"a batch mixes image dtypes {' and '.join(dtypes)}: read one dtype at a time, "
            f"e.g. read_run(url, where=\"dtype = '{dtypes[0]}'\")"
        )
    if images and all(a.shape == images[0].shape for a in images):
        out["image"] = np.stack(images)
    else:  # shapes differ: a variable-shaped tensor column
        column = np.empty(len(images), dtype=object)
        for i, arr in enumerate(images):
            column[i] = arr
        out["image"] = column
    return out


def export(
    url: str,
    out: str | os.PathLike[str],
    *,
    to: str,
    where: str | None = None,
    source: str | None = None,
    since: str | None = None,
    until: str | None = None,
    image_format: str = "keep",
    shard_bytes: int = 512 * 2**20,
    storage_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """``imagelog.export.export`` as Ray tasks, one per index hour (docs/fleet.md).

    Each hour is a whole local export in ``OUT/hour=<YYYY-MM-DDTHH>/`` (its own shards or
    images, ``metadata.jsonl``, ``gaps.jsonl`` and ``export.json``), of that hour's records read
    by the engine's SQL; ``OUT/export.json`` sums the reports and ``OUT/gaps.jsonl`` joins the
    gaps in hour order. Run again after an interruption: finished hours are skipped and an
    interrupted hour resumes where it stopped. ``progress(hours done, hours)``.
    """
    require("ray", "ray", "imagelog.ray")
    import ray

    from . import export as local

    since, until = local.check_args(to=to, image_format=image_format, where=where,
                                    source=source, since=since, until=until,
                                    shard_bytes=shard_bytes)  # fmt: skip
    store = _store(url, storage_options)
    root = store.url
    folder = Path(out)
    asked = {"run": root, "to": to, "where": where, "source": source, "since": since,
             "until": until, "image_format": image_format, "engine": "ray"}  # fmt: skip
    state_path = local.claim(folder, asked)
    cond, params = filters_sql(source=source, since=since, until=until, include_events=True,
                               where=where)  # fmt: skip
    files = list_files(store)
    opts = dict(storage_options or {})
    kwargs = {"to": to, "where": where, "source": source, "since": since, "until": until,
              "image_format": image_format, "shard_bytes": shard_bytes}  # fmt: skip
    reports: dict[str, dict[str, Any]] = {}
    todo = []
    for hour in files.hours:
        done = _finished(folder / f"hour={hour}")
        if done is not None:
            reports[hour] = done
        else:
            todo.append(hour)
    if todo:
        purge = ray.remote(num_cpus=1)(_hour_purged)
        found = ray.get([purge.remote(root, opts, h, files.keys([h])) for h in files.hours])
        ids = ray.put(sorted({i for found_ids in found for i in found_ids}))
        task = ray.remote(num_cpus=1, max_retries=2)(_export_hour)
        pending = {
            task.remote(
                root, opts, h, files.keys([h]), cond, params, ids, str(folder / f"hour={h}"), kwargs
            ): h
            for h in todo
        }
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            hour = pending.pop(ready[0])
            reports[hour] = ray.get(ready[0])
            if progress is not None:
                progress(len(reports), len(files.hours))
    report = ExportReport(out=str(folder), to=to)
    with open(folder / local.GAPS, "w", encoding="utf-8") as gaps:
        for hour in sorted(reports):
            part = reports[hour]
            report.samples += part["samples"]
            report.skipped += part["skipped"]
            report.bytes += part["bytes"]
            for name in ("converted", "gaps"):
                for k, v in part[name].items():
                    getattr(report, name)[k] = getattr(report, name).get(k, 0) + v
            report.files += [f"hour={hour}/{f}" for f in part["files"]]
            gaps_of = folder / f"hour={hour}" / local.GAPS
            if gaps_of.exists():
                gaps.write(gaps_of.read_text(encoding="utf-8"))
    state_path.write_text(
        json.dumps({"asked": asked, "complete": True, "report": report.to_dict()}, indent=2),
        encoding="utf-8",
    )
    return report


def _finished(part: Path) -> dict[str, Any] | None:
    """The report of an hour's export that finished, else None."""
    try:
        state = json.loads((part / "export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    report = state.get("report")
    return report if state.get("complete") and isinstance(report, dict) else None


def _export_hour(
    root: str,
    opts: dict[str, Any],
    hour: str,
    keys: tuple[list[str], list[str]],
    cond: str,
    params: list[Any],
    purged: Any,
    part: str,
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """One hour's local export, of the records the engine's SQL picks (a Ray task)."""
    from . import export as local
    from .run import Run

    table = _read_hour(root, opts, hour, keys, cond, params, purged, ["record"])
    records = (json.loads(text) for text in table.column("record").to_pylist())
    run = Run(_store(root, opts or None))
    report = local.export(run, part, records=records, workers=2, **kwargs)
    return report.to_dict()

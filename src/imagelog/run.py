"""Reading a run: ``imagelog.read(path)`` -> ``Run`` with ``records()`` and ``load()``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import codecs, pixfmt
from .codecs.base import as_logged
from .errors import RecordNotFound, RunNotFound
from .frames import channels_of
from .index import parse_segment, segment_keys
from .index.recover import purged_ids
from .layout import INDEX_PREFIX, MANIFEST
from .record import check_manifest
from .stores import Store, make_store
from .stores.local import LocalStore

__all__ = ["Run", "read"]


def _sort_key(rec: dict[str, Any]) -> tuple[str, int]:
    image = rec.get("image") or {}
    rid = image.get("id") or (rec.get("event") or {}).get("id", "")  # events without an image
    return str(rid), int(image.get("seq", 0))


class Run:
    """A run folder or bucket prefix, read with standard tools' eyes: index lines and image files.

    Example:
        >>> import numpy as np, imagelog, tempfile
        >>> path = tempfile.mkdtemp()
        >>> with imagelog.open(path, format="png") as log:
        ...     _ = log.log(np.full((8, 8), 7, np.uint8), source="cam1")
        >>> run = imagelog.read(path)
        >>> [int(run.load(r)[0, 0]) for r in run.records()]
        [7]
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._local: list[Any] = []

    @property
    def url(self) -> str:
        """The run's folder path or URL."""
        return self.store.url

    def manifest(self) -> dict[str, Any]:
        """The run manifest (``imagelog.json``), or {} if absent."""
        try:
            data: dict[str, Any] = json.loads(self.store.get(MANIFEST))
        except (FileNotFoundError, ValueError):
            return {}
        return data

    def segments(self) -> list[str]:
        """Index segment keys, sorted."""
        return segment_keys(self.store)

    def records(
        self,
        *,
        source: str | None = None,
        since: str | None = None,
        until: str | None = None,
        include_events: bool = False,
        where: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield index records oldest first (by id), exactly as stored, without loading the run.

        By default only records of stored images (``event.action == "logged"``); with
        ``include_events=True`` also drops, purges and other events. Records whose images
        retention purged are left out (whole hours lose their index lines with their files;
        partial purges leave a ``purged`` event listing the ids). ``since``/``until`` compare
        with ``@timestamp`` (ISO strings; UTC unless they say otherwise). ``where`` is an SQL
        condition on the columns of the ``records`` view (docs/query.md), e.g.
        ``"meta->>'$.step' = '3' AND width >= 640"``.

        Records are read one index hour at a time (DuckDB, from the ``query`` extra; without
        it, a pure-Python merge of the hour's segments), so memory holds one hour at most.
        """
        try:
            import duckdb  # noqa: F401
        except ImportError:
            if where is not None:
                raise ImportError(
                    'Run.records(where=...) needs the query extra: pip install "imagelog[query]"'
                ) from None
            yield from self._records_python(source, since, until, include_events)
            return
        from .query import iter_records

        yield from iter_records(
            self.store,
            source=source,
            since=since,
            until=until,
            include_events=include_events,
            where=where,
        )

    def _query_files(self) -> Any:
        """Files for a ``query()`` relation: the run's own files when local; for a remote run,
        copies that stay (in a temporary folder) while this ``Run`` lives, since the relation
        may be run at any later time."""
        from .query import LocalFiles

        files = LocalFiles(self.store)
        if not isinstance(self.store, LocalStore):
            self._local.append(files)
        return files

    def _records_python(
        self, source: str | None, since: str | None, until: str | None, include_events: bool
    ) -> Iterator[dict[str, Any]]:
        """Without DuckDB: one hour of JSON Lines segments at a time, merged by id."""
        from .layout import hour_of_key

        keys = self.segments()
        purged: set[str] = set()
        for key in keys:  # tombstones first: a text search, then only those lines are parsed
            try:
                data = self.store.get(key)
            except FileNotFoundError:
                continue
            if b'"action":"purged"' in data:
                purged |= purged_ids(parse_segment(data, key=key, warn=False))
        by_hour: dict[str, list[str]] = {}
        for key in keys:
            by_hour.setdefault(hour_of_key(key) or "", []).append(key)
        for hour in sorted(by_hour):
            records: list[dict[str, Any]] = []
            for key in by_hour[hour]:
                try:
                    records.extend(parse_segment(self.store.get(key), key=key))
                except FileNotFoundError:
                    continue
            records.sort(key=_sort_key)
            for rec in records:
                action = (rec.get("event") or {}).get("action")
                if action != "logged" and not include_events:
                    continue
                image = rec.get("image") or {}
                if action == "logged" and purged and image.get("id") in purged:
                    continue
                if source is not None and image.get("source") != source:
                    continue
                ts = str(rec.get("@timestamp", ""))
                if since is not None and ts < since:
                    continue
                if until is not None and ts >= until:
                    continue
                yield rec

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        """Run SQL over the ``records`` view (docs/query.md); returns a ``duckdb.DuckDBPyRelation``.

        Needs the ``query`` extra. The relation reads the index as it was listed now, so
        ``.fetchall()``, ``.arrow()``, ``.df()`` and ``.pl()`` come free.

        Example:
            >>> import numpy as np, imagelog, tempfile
            >>> path = tempfile.mkdtemp()
            >>> with imagelog.open(path, format="png") as log:
            ...     for step in range(3):
            ...         _ = log.log(np.zeros((4, 6), np.uint8), source="cam", step=step)
            >>> imagelog.read(path).query(
            ...     "select count(*), max(width) from records where (meta->>'$.step')::int >= ?", [1]
            ... ).fetchall()
            [(2, 6)]
        """
        from .query import connect

        con = connect(self.store, local=self._query_files())
        return con.sql(sql, params=params)

    def get(self, record_id: str) -> dict[str, Any]:
        """The record with this id (or a unique prefix of it); one pass, bounded memory."""
        if not record_id:
            raise RecordNotFound("an empty id matches every record")
        try:
            import duckdb  # noqa: F401
        except ImportError:
            matches = [r for r in self._records_python(None, None, None, True)
                       if str((r.get("image") or {}).get("id", "")).startswith(record_id)]  # fmt: skip
            ids = {str((r.get("image") or {}).get("id")) for r in matches}
        else:
            from .query import iter_json, with_retry

            def find(con: Any) -> tuple[set[str], list[dict[str, Any]]]:
                found = {i for (i,) in con.sql(
                    "SELECT DISTINCT id FROM records WHERE starts_with(id, ?) LIMIT 2",
                    params=[record_id],
                ).fetchall()}  # fmt: skip
                if len(found) != 1:
                    return found, []
                rel = con.sql("SELECT CAST(record AS VARCHAR) FROM records WHERE id = ? "
                              "ORDER BY seq", params=[next(iter(found))])  # fmt: skip
                return found, list(iter_json(rel))

            ids, matches = with_retry(self.store, find)
        if not ids:
            raise RecordNotFound(f"no record with id {record_id!r} in {self.url}")
        if len(ids) > 1:
            raise RecordNotFound(f"id prefix {record_id!r} is ambiguous in {self.url}")
        return matches[-1]

    def read_bytes(self, rec: dict[str, Any]) -> bytes:
        """The stored (encoded) bytes of a record's image."""
        path = (rec.get("file") or {}).get("path")
        if not path:
            action = (rec.get("event") or {}).get("action")
            raise ValueError(
                f"record {rec.get('image', {}).get('id')} has no image (event {action!r})"
            )
        return self.store.get(path)

    def path(self, rec: dict[str, Any]) -> Path:
        """The local file of a record's image (local runs only)."""
        root = self.store.local_root
        if root is None:
            raise TypeError(f"{self.url} is not a local folder; use read_bytes()")
        return root / str(rec["file"]["path"])

    def load(self, rec: dict[str, Any], *, convert: str | None = None) -> np.ndarray[Any, Any]:
        """Decode a record's image to a numpy array with the dtype and channels that were logged.

        A camera frame (``image.pixel_format``) comes back as it was delivered, without row
        padding: a Bayer mosaic ``HxW``, YUYV/UYVY ``HxWx2``, NV12/NV21/I420 ``(H*3/2)xW`` (the
        shapes OpenCV's ``cvtColor`` takes). ``convert="rgb"`` returns ``HxWx3`` RGB instead,
        through ``imagelog.pixfmt.to_rgb`` (Bayer and YUV need the ``imagelog[color]`` extra).
        """
        if convert not in (None, "rgb"):
            raise ValueError(f"convert must be None or 'rgb', got {convert!r}")
        data = self.read_bytes(rec)
        image = rec.get("image") or {}
        fmt = str(image.get("format", ""))
        enc = (image.get("encoder") or {}).get("name")
        if enc == "passthrough" or fmt not in codecs.names():
            arr = codecs.decode_any(data)
        else:
            arr = codecs.get(fmt).decode(data)
        arr = as_logged(arr, str(image.get("dtype", "")), int(image.get("channels") or 0))
        name = image.get("pixel_format")
        if name:
            pf = pixfmt.parse(str(name))
            layout = image.get("layout")
            arr = pixfmt.from_stored(
                arr,
                pf,
                None if layout is None else str(layout),
                int(image["width"]),
                int(image["height"]),
            )
            if convert is not None:
                return pixfmt.to_rgb(arr, pf)
        elif convert is not None:  # a frame logged without a pixel format: gray or RGB(A)
            if channels_of(arr) == 1:
                return np.repeat(arr.reshape(*arr.shape[:2], 1), 3, axis=2)
            return np.ascontiguousarray(arr[:, :, :3])
        return arr


def read(path: str | os.PathLike[str], /, *, storage_options: dict[str, Any] | None = None) -> Run:
    """Open a run for reading (a folder path or URL written by ``imagelog.open``)."""
    if os.path.isfile(path):
        raise RunNotFound(f"{os.fspath(path)} is a file, not a run folder")
    try:
        store = make_store(path, create=False, storage_options=storage_options)
    except FileNotFoundError:
        raise RunNotFound(f"no imagelog run at {os.fspath(path)}") from None
    try:
        check_manifest(store.get(MANIFEST), f"{store.url.rstrip('/')}/{MANIFEST}")
    except FileNotFoundError:
        if not any(True for _ in store.list(INDEX_PREFIX)):
            raise RunNotFound(
                f"no imagelog run at {store.url} (no {MANIFEST} and no index/)"
            ) from None
    return Run(store)

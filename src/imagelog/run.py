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
from .index import segment_keys
from .layout import INDEX_PREFIX, MANIFEST
from .record import check_manifest
from .stores import Store, make_store

__all__ = ["Run", "read"]


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
        with ``@timestamp`` (ISO 8601 or Unix seconds; a time without a zone is local time,
        ``imagelog.records.parse_time``). ``where`` is an SQL
        condition on the columns of the ``records`` view (docs/query.md), e.g.
        ``"meta->>'$.step' = '3' AND width >= 640"``.

        Records are read one index hour at a time (the records engine, ``imagelog.records``),
        so memory holds one hour at most.
        """
        from .records import iter_records

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
        from .records import LocalFiles

        files = LocalFiles(self.store)
        if self.store.local_root is None:
            self._local.append(files)
        return files

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        """Run SQL over the ``records`` view (docs/query.md); returns a ``duckdb.DuckDBPyRelation``.

        The relation reads the index as it was listed now, so
        ``.fetchall()`` works from the plain install; ``.arrow()``, ``.df()`` and ``.pl()`` need
        pyarrow (the ``query`` extra), pandas or polars.

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
        from .records import connect_view

        con = connect_view(self.store, local=self._query_files())
        return con.sql(sql, params=params)

    def get(self, record_id: str) -> dict[str, Any]:
        """The record with this id (or a unique prefix of it); one pass, bounded memory."""
        if not record_id:
            raise RecordNotFound("an empty id matches every record")
        from .records import iter_json, with_retry

        def find(con: Any) -> tuple[set[str], list[dict[str, Any]]]:
            found = {i for (i,) in con.execute(
                "SELECT DISTINCT id FROM records WHERE starts_with(id, ?) LIMIT 2", [record_id]
            ).fetchall()}  # fmt: skip
            if len(found) != 1:
                return found, []
            sql = "SELECT CAST(record AS VARCHAR) FROM records WHERE id = ? ORDER BY seq"
            return found, list(iter_json(con, sql, [next(iter(found))]))

        ids, matches = with_retry(self.store, find)
        if not ids:
            raise RecordNotFound(f"no record with id {record_id!r} in {self.url}")
        if len(ids) > 1:
            raise RecordNotFound(f"id prefix {record_id!r} is ambiguous in {self.url}")
        return matches[-1]

    def read_bytes(self, rec: dict[str, Any]) -> bytes:
        """The stored (encoded) bytes of a record's image (a shard member's: one ranged read)."""
        path = (rec.get("file") or {}).get("path")
        if not path:
            action = (rec.get("event") or {}).get("action")
            raise ValueError(
                f"record {rec.get('image', {}).get('id')} has no image (event {action!r})"
            )
        from ._shards import read_file

        return read_file(self.store, rec["file"])

    def path(self, rec: dict[str, Any]) -> Path:
        """The local file of a record's image (local runs only); for a shard member, the shard
        (``file.offset`` and ``file.size`` say where in it)."""
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
        return self._decode(rec, self.read_bytes(rec), convert)

    def _decode(
        self, rec: dict[str, Any], data: bytes, convert: str | None = None
    ) -> np.ndarray[Any, Any]:
        """``load`` of a record whose stored bytes are read already."""
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

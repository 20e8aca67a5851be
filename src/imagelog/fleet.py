"""Reading a manifest row's image from any engine's worker (Ray, Spark, Daft...).

A compacted hour (``imagelog.compact``) gives each record's ``uri`` (the run's root joined with
the path of the image's current file), ``record`` (the index line as written, JSON text) and
``uri_record`` (the record of the file at ``uri`` where a retention tier re-encoded the frame);
``imagelog.ray.read_run`` gives ``uri`` and the current ``record``.
``load_pixels(uri, coalesce(uri_record, record))`` decodes that image exactly as ``Run.load`` does (JPEG XL, 16-bit,
float and camera formats through imagelog's codecs), keeping one store per run root for the
process's life, so a worker fetches each image by key without listing anything.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

__all__ = ["load_pixels", "run_root"]

_RUNS: dict[tuple[str, str], Any] = {}


def run_root(uri: str, record: dict[str, Any]) -> str:
    """The run's root in a record's ``uri`` (``FileNotFoundError`` if the record has no image
    inside the run: an event, or a path that leaves it, has no ``uri``)."""
    path = str((record.get("file") or {}).get("path") or "")
    if not uri or not path:
        raise FileNotFoundError(f"record {_rid(record)} has no image inside the run")
    if not str(uri).endswith("/" + path):
        raise FileNotFoundError(
            f"record {_rid(record)} describes {path}, not {uri}: a retention tier replaced "
            "its file; pass the manifest's uri_record where it is set (coalesce(uri_record, "
            "record))"
        )
    return str(uri)[: -len(path) - 1]


def _run(root: str, storage_options: dict[str, Any] | None) -> Any:
    from .run import Run
    from .stores import make_store

    key = (root, json.dumps(storage_options or {}, sort_keys=True, default=str))
    run = _RUNS.get(key)
    if run is None:
        store = make_store(root, create=False, storage_options=storage_options)
        run = _RUNS[key] = Run(store)
    return run


def load_pixels(
    uri: str | None,
    record: str | dict[str, Any],
    *,
    storage_options: dict[str, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """The pixels of a manifest row (``uri``, ``record``) as ``Run.load`` returns them.

    ``FileNotFoundError`` names the record if its image is gone or has no ``uri``;
    ``imagelog.errors.KeyOutsideRun`` if its path leads out of the run.
    """
    rec = json.loads(record) if isinstance(record, str | bytes) else record
    run = _run(run_root(str(uri or ""), rec), storage_options)
    try:
        arr: np.ndarray[Any, Any] = run.load(rec)
    except FileNotFoundError:
        raise FileNotFoundError(f"record {_rid(rec)}: its image {uri} is missing") from None
    return arr


def _rid(rec: dict[str, Any]) -> str:
    return str((rec.get("image") or {}).get("id") or (rec.get("event") or {}).get("id"))

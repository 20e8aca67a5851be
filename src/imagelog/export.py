"""Export a run (or the records an SQL condition picks) as a training data set.

Three targets, each loadable by the standard tool without imagelog:

- ``imagefolder``: ``images/<source>/<id>.<ext>`` plus ``metadata.jsonl`` (``file_name`` and the
  record's fields), for ``datasets.load_dataset("imagefolder", data_dir=OUT)``.
- ``webdataset``: size-bounded tar shards ``shard-000000.tar``, one sample per record (the key is
  the record id: no dots), ``<id>.<ext>`` and ``<id>.json`` (the record), for ``webdataset``.
- ``parquet``: ``data/part-000000.parquet`` with the image bytes as a Hugging Face ``Image``
  feature (``{"bytes", "path"}``) plus the record's columns.

Images are copied as stored unless the target cannot decode them (Pillow, which ``datasets``
decodes with, reads no JPEG XL and no ``.npy``; webdataset reads plain ``.npy`` but not imagelog's
zstd-compressed one): those are converted losslessly, to PNG (float images, which PNG cannot
hold, to TIFF; for webdataset, compressed ``.npy`` to plain ``.npy``). ``image_format="png"|"jpeg"`` converts
every image. Each converted sample says so in its fields (``export_converted_from``).

Every export writes ``export.json`` (what was asked, what was done) and ``gaps.jsonl``: the drops,
failures and purges among the chosen records, and images missing from storage, so a data set
never hides what it lacks. An interrupted export resumes where it stopped when run again with the
same arguments: records go out in id order, and finished output is never rewritten. Every
argument (the ``where`` SQL and the times included) is checked before anything is created, and a
folder whose export wrote no sample yet takes any arguments.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import _png
from ._export_outputs import _ImageFolder, _Output, _Parquet, _WebDataset
from ._extras import require
from .errors import KeyOutsideRun
from .records import parse_time
from .run import Run

__all__ = ["TARGETS", "ExportReport", "check_args", "claim", "encode_as", "export"]

TARGETS = ("imagefolder", "webdataset", "parquet")
IMAGE_FORMATS = ("keep", "png", "tiff", "jpeg")
STATE = "export.json"
GAPS = "gaps.jsonl"

#: Formats whose files Pillow opens (as the ``datasets`` Image feature decodes with it).
_EXT = {"jpeg": "jpg", "tiff": "tif"}


@dataclasses.dataclass
class ExportReport:
    """What an export wrote."""

    out: str
    to: str
    samples: int = 0
    skipped: int = 0
    """Records already exported by an earlier, interrupted run."""
    converted: dict[str, int] = dataclasses.field(default_factory=dict)
    """``"jxl->png": n``: conversions the target needed (or ``image_format`` asked for)."""
    gaps: dict[str, int] = dataclasses.field(default_factory=dict)
    """Drops, failures, purges and missing images, by kind; listed in ``gaps.jsonl``."""
    bytes: int = 0
    files: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        return dataclasses.asdict(self)


_PROBED: dict[tuple[str, str, int, str], bool] = {}
#: Formats that a stock Pillow (what ``datasets`` decodes with) opens without plugins.
_STOCK_PILLOW = frozenset({"png", "jpeg", "webp", "tiff", "qoi", "avif"})


def _pillow_reads(rec: dict[str, Any], data: bytes) -> bool:
    """Whether Pillow (what the ``datasets`` Image feature decodes with) reads this record's
    image: tried on the first image of each format, dtype, channels and encoder settings."""
    image = rec.get("image") or {}
    if str(image.get("format")) not in _STOCK_PILLOW:
        return False  # a plugin in this process (pyjpegxl's, say) is not the reader's Pillow
    encoder = json.dumps(image.get("encoder") or {}, sort_keys=True)
    key = (
        str(image.get("format")),
        str(image.get("dtype")),
        int(image.get("channels") or 0),
        encoder,
    )
    if key not in _PROBED:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
            _PROBED[key] = True
        except Exception:
            _PROBED[key] = False
    return _PROBED[key]


#: TIFF settings of ``image_format="tiff"``: zstd level 1 after the horizontal predictor, about
#: as small as the PNG of conversions and faster to write; Pillow reads it (its libtiff has zstd).
FAST_TIFF: dict[str, Any] = {"compression": "zstd", "level": 1, "predictor": 2}


def encode_as(arr: np.ndarray[Any, Any], fmt: str, *, what: str = "the image") -> bytes:
    """Pixels as ``png`` or ``tiff`` (lossless) or ``jpeg`` (quality 95); ``ValueError`` naming
    ``what`` when the format cannot hold them."""
    import imagecodecs

    channels = 1 if arr.ndim == 2 else int(arr.shape[2])
    pixels = arr.astype(np.uint8) if arr.dtype == np.bool_ else arr  # 0 and 1, as logged
    if fmt == "tiff":
        from .codecs.tiff import layout

        if pixels.dtype in (np.float32, np.float64):  # Pillow reads gray float (mode F)
            return bytes(imagecodecs.tiff_encode(pixels, **layout(pixels)))
        return bytes(imagecodecs.tiff_encode(pixels, **FAST_TIFF, **layout(pixels)))
    if fmt == "png" and pixels.dtype in (np.uint8, np.uint16) and channels <= 4:
        return _png.encode(pixels)
    if fmt == "jpeg" and pixels.dtype == np.uint8 and channels in (1, 3):
        return bytes(imagecodecs.jpeg8_encode(pixels, level=95))
    raise ValueError(
        f"cannot write {what}: {fmt.upper()} cannot hold {channels}-channel {arr.dtype} pixels; "
        "use .tif"
    )


def _encode(arr: np.ndarray[Any, Any], fmt: str) -> tuple[bytes, str]:
    """Encode pixels for a target that cannot read the stored format; returns (bytes, ext)."""
    if fmt == "jpeg" and arr.dtype == np.uint8:
        return encode_as(arr, "jpeg"), "jpg"
    channels = 1 if arr.ndim == 2 else int(arr.shape[2])
    if fmt != "tiff" and arr.dtype in (np.uint8, np.uint16, np.bool_) and channels <= 4:
        return encode_as(arr, "png"), "png"
    return encode_as(arr, "tiff"), "tif"  # float (or asked for): lossless, Pillow reads it


def _fields(rec: dict[str, Any]) -> dict[str, Any]:
    """Flat, schema-stable fields of a record (nested parts as JSON text)."""
    image = rec.get("image") or {}
    file = rec.get("file") or {}
    event = rec.get("event") or {}
    return {
        "id": image.get("id"),
        "ts": rec.get("@timestamp"),
        "created": event.get("created"),
        "source": image.get("source"),
        "seq": image.get("seq"),
        "width": image.get("width"),
        "height": image.get("height"),
        "channels": image.get("channels"),
        "dtype": image.get("dtype"),
        "format": image.get("format"),
        "lossless": image.get("lossless"),
        "path": file.get("path"),
        "message": rec.get("message"),
        "labels": json.dumps(rec.get("labels") or {}, sort_keys=True),
        "meta": json.dumps(rec.get("meta") or {}, sort_keys=True),
        "record": json.dumps(rec, separators=(",", ":")),
    }


def check_args(
    *,
    to: str,
    image_format: str,
    where: str | None,
    source: str | None,
    since: str | None,
    until: str | None,
    shard_bytes: int = 1,
) -> tuple[str | None, str | None]:
    """Refuse a bad target, image format, size, time or filter before anything is read or
    written (the records engine's parser; ``where`` bound against an empty view). Returns
    ``since`` and ``until`` as the records engine's time rule reads them."""
    if to not in TARGETS:
        raise ValueError(f"unknown export target {to}: choose one of {', '.join(TARGETS)}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(
            f"unknown image format {image_format}: choose one of {', '.join(IMAGE_FORMATS)}"
        )
    if shard_bytes < 1:
        raise ValueError(f"shard_bytes must be a positive number of bytes, not {shard_bytes}")
    if to == "parquet":
        require("pyarrow", "query", "export --to parquet")
    from .records import check_where, filters_sql

    since = None if since is None else parse_time(since, name="since")
    until = None if until is None else parse_time(until, name="until")
    filters_sql(source=source, since=since, until=until, include_events=True, where=where)
    check_where(where)
    return since, until


def claim(folder: Path, asked: dict[str, Any]) -> Path:
    """Make ``folder`` an export of ``asked`` (or continue one); refuse a file, a folder that
    holds another export that wrote samples already, or other files. Returns its
    ``export.json``, marked incomplete."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder for the export")
    state_path = folder / STATE
    if state_path.exists():
        previous = json.loads(state_path.read_text(encoding="utf-8"))
        if previous.get("asked") != asked and not _nothing_written(folder):
            raise ValueError(
                f"{folder} holds another export ({_describe(previous.get('asked'))}); "
                "choose an empty folder"
            )
    elif folder.is_dir() and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty and holds no imagelog export")
    folder.mkdir(parents=True, exist_ok=True)
    state_path.write_text(
        json.dumps({"asked": asked, "complete": False}, indent=2), encoding="utf-8"
    )
    return state_path


def export(
    run: Run,
    out: str | os.PathLike[str],
    *,
    to: str,
    where: str | None = None,
    source: str | None = None,
    since: str | None = None,
    until: str | None = None,
    image_format: str = "keep",
    shard_bytes: int = 512 * 2**20,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    records: Iterable[dict[str, Any]] | None = None,
) -> ExportReport:
    """Export the chosen records of ``run`` to ``out`` as ``to`` (see the module docstring).

    Resumes an interrupted export of the same arguments into the same folder; refuses a folder
    that holds a different export. ``workers`` threads read and convert images (default: one
    per CPU); samples are written in record order. ``records``: the chosen records (events
    included, in id order) when the caller has read them already (``imagelog.ray.export``, one
    hour per task); the filters are then only recorded.
    """
    since, until = check_args(to=to, image_format=image_format, where=where, source=source,
                              since=since, until=until, shard_bytes=shard_bytes)  # fmt: skip
    folder = Path(out)
    asked = {"run": run.url, "to": to, "where": where, "source": source, "since": since,
             "until": until, "image_format": image_format}  # fmt: skip
    state_path = claim(folder, asked)
    output: _Output
    if to == "imagefolder":
        output = _ImageFolder(folder)
    elif to == "webdataset":
        output = _WebDataset(folder, shard_bytes)
    else:
        output = _Parquet(folder, shard_bytes)
    last = output.resume()
    report = ExportReport(out=str(folder), to=to)
    total = 0
    if progress is not None and records is None:
        total = _count(run, where=where, source=source, since=since, until=until)
    gaps_path = folder / GAPS
    seen_gaps = _gap_ids(gaps_path)
    done = 0
    workers = max(1, workers or os.cpu_count() or 1)
    pending: collections.deque[tuple[str, dict[str, Any], Future[_Prepared | None]]] = (
        collections.deque()
    )

    def drain(keep: int) -> None:
        """Write prepared samples in record order, keeping ``keep`` in flight."""
        while len(pending) > keep:
            rid, rec, future = pending.popleft()
            prepared = future.result()
            if prepared is None:
                _gap(gaps, seen_gaps, report, "missing", rid, rec)
                continue
            data, ext, converted = prepared
            image = rec.get("image") or {}
            fields = _fields(rec)
            fmt = str(image.get("format", ""))
            fields["export_format"] = ext
            fields["export_converted_from"] = fmt if converted else None
            if converted:
                key = f"{fmt}->{ext}"
                report.converted[key] = report.converted.get(key, 0) + 1
            output.add(rid, data, ext, rec, fields)
            report.samples += 1
            report.bytes += len(data)

    # reading and converting run in threads (the codecs release the GIL); writing stays in order
    with (
        open(gaps_path, "a", encoding="utf-8") as gaps,
        _closing(output),
        ThreadPoolExecutor(workers, thread_name_prefix="imagelog-export") as pool,
    ):
        if records is None:
            records = run.records(
                source=source, since=since, until=until, where=where, include_events=True
            )
        for rec in records:
            done += 1
            if progress is not None:
                progress(done, total)
            event = rec.get("event") or {}
            image = rec.get("image") or {}
            rid = str(image.get("id") or event.get("id") or "")
            action = event.get("action")
            if action == "tiered":  # not a gap: the frame's record reads with its new file
                continue
            if action != "logged":
                drain(0)  # gaps.jsonl in record order too
                _gap(gaps, seen_gaps, report, str(action), rid, rec)
                continue
            if rid <= last:
                report.skipped += rid not in seen_gaps
                continue
            pending.append((rid, rec, pool.submit(_prepare, run, rec, to, image_format)))
            drain(workers)
        drain(0)
    report.files = output.close()
    report.gaps = dict(Counter(json.loads(x)["kind"] for x in gaps_path.read_text().splitlines()))
    state_path.write_text(
        json.dumps({"asked": asked, "complete": True, "report": report.to_dict()}, indent=2),
        encoding="utf-8",
    )
    return report


_Prepared = tuple[bytes, str, bool]


def _prepare(run: Run, rec: dict[str, Any], to: str, image_format: str) -> _Prepared | None:
    """The bytes to export for a record (None if its image is missing from storage, or its
    path leaves the run)."""
    try:
        data = run.read_bytes(rec)
    except (FileNotFoundError, KeyOutsideRun):
        return None
    return _for_target(run, rec, data, to, image_format)


def _for_target(
    run: Run, rec: dict[str, Any], data: bytes, to: str, image_format: str
) -> tuple[bytes, str, bool]:
    image = rec.get("image") or {}
    fmt = str(image.get("format", ""))
    ext = str((rec.get("file") or {}).get("extension") or _EXT.get(fmt, fmt))
    if image_format == "keep":
        if to == "webdataset" and fmt == "npy":
            # imagelog's .npy is zstd- or lz4-compressed; webdataset decodes plain .npy itself
            buf = io.BytesIO()
            np.save(buf, run._decode(rec, data), allow_pickle=False)
            return buf.getvalue(), "npy", True
        if _pillow_reads(rec, data):
            return data, ext, False
        target = "png"
    else:
        target = image_format
        if _EXT.get(fmt, fmt) == _EXT.get(target, target):
            return data, ext, False
    arr = run._decode(rec, data)  # the bytes read once (one GET on S3)
    new, new_ext = _encode(arr, target)
    return new, new_ext, True


@contextlib.contextmanager
def _closing(output: _Output) -> Iterator[None]:
    """On an error or an interruption, release the output's files (unfinished shards stay
    ``.part`` files, removed when the export resumes)."""
    try:
        yield
    except BaseException:
        output.abort()
        raise


def _gap(
    gaps: Any, seen: set[str], report: ExportReport, kind: str, rid: str, rec: dict[str, Any]
) -> None:
    report.gaps[kind] = report.gaps.get(kind, 0) + 1
    if rid in seen:
        return
    seen.add(rid)
    event = rec.get("event") or {}
    gaps.write(json.dumps({"kind": kind, "id": rid, "ts": rec.get("@timestamp"),
                           "source": (rec.get("image") or {}).get("source"),
                           "reason": event.get("reason"), "message": rec.get("message")}) + "\n")  # fmt: skip


def _gap_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError):
            continue
    return out


def _nothing_written(folder: Path) -> bool:
    """Whether an unfinished export wrote no sample yet (its files are all empty): a retry with
    other arguments may take the folder over."""
    return all(p.is_dir() or p.name == STATE or p.stat().st_size == 0 for p in folder.rglob("*"))


def _describe(asked: Any) -> str:
    """What an earlier export asked for, without quotes: ``to=parquet, where=...``."""
    if not isinstance(asked, dict):
        return "unknown arguments"
    return ", ".join(f"{k}={v}" for k, v in asked.items() if v is not None and k != "run")


def _count(run: Run, **filters: Any) -> int:
    from .records import filters_sql, with_retry

    cond, params = filters_sql(include_events=True, **filters)
    rows = with_retry(run.store, lambda con: con.execute(
        f"SELECT count(*) FROM records WHERE {cond}", params or None).fetchall())  # fmt: skip
    return int(rows[0][0])

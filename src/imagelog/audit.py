"""The run audit and the rebuild: ``verify`` a run against its files, ``reindex`` it from its images.

Verify. Every index line is checked against its file (present, size, SHA-256, a sample decoded),
torn lines are reported, and files without a line are listed as orphans. (Not to be confused
with the ``verify=`` setting of ``imagelog.open()``, the write-time decode check of
``imagelog._verify``.)

Reindex. Every image carries its own record (PNG iTXt, XMP, a TIFF tag, or a ``.json`` sidecar),
so the index can be rebuilt from the images alone. It rebuilds the index, never the images, and
hides no damage:

- a record the old index still holds is kept as it was, ``file.size`` and ``file.hash``
  included: an image whose bytes changed keeps failing ``verify`` (and is listed in the report);
- a record whose image is missing is kept too, so ``verify``, ``ls`` and ``export`` still name it;
- an image the old index does not know (an orphan) is adopted, with ``file.*`` computed from its
  bytes, only if its embedded record reads and its pixels decode; otherwise a ``damaged`` event
  names its path and stays in the index, and ``verify`` reports the file as damaged (not as an
  orphan to adopt) for as long as it is there;
- event lines (drops, purges) still readable in the old index are kept; a sidecar whose image was
  never written goes to ``quarantine/``.

Shards (``imagelog._shards``) are read member by member under the same rules: verify checks each
record's member against the shard, lists members without a line as orphans and a torn tail (a
writer killed mid-write) as an orphan too; reindex keeps the records of members the old index
knows, adopts the others (or names them in a ``damaged`` event), and cuts a torn tail back to
the last whole member (closing the tar), so no line ever points past it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from . import codecs
from ._shards import TRAILER, member_range, read_file, scan
from .codecs import embedded_record
from .errors import UnknownFormat
from .ids import uuid7
from .index.reader import iter_segment_lines, parquet_records, segment_keys
from .layout import (
    IMAGES_PREFIX,
    INDEX_PREFIX,
    QUARANTINE_PREFIX,
    hour_end_ns,
    hour_of_key,
    is_compacted,
    is_shard,
    segment_key,
    writer_of,
)
from .record import damaged_record, dumps, iso_utc, stored_file
from .stores.base import Store

__all__ = [
    "DAMAGE",
    "Finding",
    "Readable",
    "ReindexReport",
    "VerifyReport",
    "reindex",
    "verify",
]

Progress = Callable[[int, int], None]


class Readable(Protocol):
    """What ``verify`` needs of a run (``imagelog.Run`` is one): its store and a decoder."""

    @property
    def store(self) -> Store:
        """The run's store."""

    def load(self, rec: dict[str, Any]) -> Any:
        """Decode a record's image to an array."""


# -- verify -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem: ``kind`` is missing, size, hash, decode, torn, damaged or orphan."""

    kind: str
    key: str
    detail: str = ""


DAMAGE = ("missing", "size", "hash", "decode", "torn", "damaged")


@dataclasses.dataclass
class VerifyReport:
    """What ``verify`` found. Orphans (whole files without an index line, left by a crash
    between rename and index append) are reported but are not damage: ``reindex`` adopts them.
    A file without a line that ``reindex`` cannot adopt (no readable record, or pixels that do
    not decode) is ``damaged``.
    """

    segments: int = 0
    records: int = 0
    purged: int = 0
    hashed: int = 0
    decoded: int = 0
    files: int = 0
    findings: list[Finding] = dataclasses.field(default_factory=list)

    def of(self, kind: str) -> list[Finding]:
        """The findings of one kind."""
        return [f for f in self.findings if f.kind == kind]

    @property
    def damaged(self) -> bool:
        """Whether anything is damaged (missing, truncated, corrupt, undecodable, torn)."""
        return any(f.kind in DAMAGE for f in self.findings)

    def counts(self) -> dict[str, int]:
        """Number of findings per kind (every kind listed)."""
        return {k: len(self.of(k)) for k in (*DAMAGE, "orphan")}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary."""
        return {
            "segments": self.segments,
            "records": self.records,
            "purged": self.purged,
            "files": self.files,
            "hashed": self.hashed,
            "decoded": self.decoded,
            "damaged": self.damaged,
            "counts": self.counts(),
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }


def _sampled(rid: str, fraction: float) -> bool:
    if fraction >= 1:
        return True
    return zlib.crc32(rid.encode("utf-8")) / 2**32 < fraction


def verify(
    run: Readable,
    *,
    sample: float = 0.1,
    hashes: bool = True,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check a run: every index line against its file, torn lines, and files without a line.

    Args:
        run: the run to check (not being written, or orphans of frames in flight show up).
        sample: the fraction of images to decode (chosen by record id, so repeatable); 1 = all.
        hashes: check ``file.hash.sha256`` of every image (reads every file).
        progress: called with (done, total) as records are checked.
    """
    if not 0.0 <= sample <= 1.0:  # nan fails this too
        raise ValueError(f"sample is the fraction of images to decode, 0..1; got {sample}")
    store = run.store
    report = VerifyReport()
    records: list[dict[str, Any]] = []
    from .records import list_files, purged_ids

    jsonl_keys, parquet_keys = list_files(store).keys()  # compacted hours replace their segments
    for key in parquet_keys:
        report.segments += 1
        try:
            records.extend(rec for _, rec in parquet_records(store.get(key)))
        except FileNotFoundError:
            continue
    for key in jsonl_keys:
        report.segments += 1
        try:
            data = store.get(key)
        except FileNotFoundError:
            continue
        for number, raw, rec in iter_segment_lines(data):
            if rec is None:
                tail = data.rstrip(b"\n").endswith(raw)
                where = "last line" if tail else f"line {number}"
                report.findings.append(Finding("torn", key, f"{where}: {len(raw)} bytes"))
            else:
                records.append(rec)
    gone = purged_ids(store)
    logged = [r for r in records if (r.get("event") or {}).get("action") == "logged"]
    report.purged = sum(1 for r in logged if (r.get("image") or {}).get("id") in gone)
    from .records import iter_records

    logged = list(iter_records(store))  # as they read now: retention tiers supersede files
    report.records = len(logged)
    listing = {o.key: o.size for o in store.list(IMAGES_PREFIX)}
    report.files = sum(1 for k in listing if not k.endswith(".json"))
    indexed: set[str] = set()
    members: dict[str, set[int]] = {}  # shard -> the offsets of its indexed members
    for i, rec in enumerate(logged):
        if progress is not None:
            progress(i, len(logged))
        file = rec.get("file") or {}
        path = str(file.get("path", ""))
        rid = str((rec.get("image") or {}).get("id", ""))
        indexed.add(path)
        sidecar = (rec.get("imagelog") or {}).get("sidecar")
        if sidecar:
            indexed.add(str(sidecar))
        if path not in listing:
            report.findings.append(Finding("missing", path, f"record {rid}"))
            continue
        if "offset" in file:  # a shard member: it must lie whole inside the shard
            span = member_range(file)
            if span is None:
                detail = f"record {rid}: offset {file['offset']!r} names no member"
                report.findings.append(Finding("missing", path, detail))
                continue
            end = span[0] + span[1]
            members.setdefault(path, set()).add(span[0])
            if end > listing[path]:
                detail = (
                    f"record {rid}: its member ends at byte {end}, the shard has {listing[path]}"
                )
                report.findings.append(Finding("size", path, detail))
                continue
        elif "size" in file and listing[path] != file["size"]:
            detail = f"record {rid}: {listing[path]} bytes, the index says {file['size']}"
            report.findings.append(Finding("size", path, detail))
            continue
        want = (file.get("hash") or {}).get("sha256")
        if hashes and want:
            try:
                data = read_file(store, file)
            except (FileNotFoundError, ValueError):
                report.findings.append(Finding("missing", path, f"record {rid}"))
                continue
            report.hashed += 1
            if hashlib.sha256(data).hexdigest() != want:
                report.findings.append(Finding("hash", path, f"record {rid}: sha256 differs"))
                continue
        if _sampled(rid, sample):
            report.decoded += 1
            try:
                arr = run.load(rec)
                image = rec.get("image") or {}
                shape = (image.get("height"), image.get("width"))
                # a camera frame (pixel_format) is checked by load(): it reshapes to its layout
                planar = bool(image.get("pixel_format"))
                if None not in shape and not planar and tuple(arr.shape[:2]) != shape:
                    raise ValueError(f"decoded {arr.shape[:2]}, the record says {shape}")
            except Exception as exc:
                report.findings.append(
                    Finding("decode", path, f"record {rid}: {type(exc).__name__}: {exc}")
                )
    if progress is not None:
        progress(len(logged), len(logged))
    for key in listing:
        if is_shard(key):
            report.findings.extend(_shard_orphans(store, key, members.get(key, set())))
            continue
        if key in indexed:
            continue
        if not key.endswith(".json"):
            try:
                _, why = adoptable(store, key, store.get(key), sidecar=key + ".json" in listing)
            except FileNotFoundError:
                continue
            if why is None:
                report.findings.append(Finding("orphan", key, "no index line (reindex adopts it)"))
            else:
                detail = f"no index line, and reindex cannot adopt it: {why}"
                report.findings.append(Finding("damaged", key, detail))
        elif key[:-5] not in listing:
            detail = "a sidecar without its image (a crash before the image was written)"
            report.findings.append(Finding("orphan", key, detail))
    return report


def adoptable(
    store: Store, key: str, data: bytes, *, sidecar: bool
) -> tuple[dict[str, Any] | None, str | None]:
    """The record ``reindex`` would adopt an image without an index line with, or why not:
    ``(record, None)`` or ``(None, reason)``. One rule for ``reindex`` and ``verify``'s advice."""
    rec: dict[str, Any] | None
    try:
        if sidecar:
            loaded = json.loads(store.get(key + ".json"))
            rec = loaded if isinstance(loaded, dict) else None
        else:
            rec = embedded_record(data)
    except (ValueError, FileNotFoundError):
        rec = None
    created = str(((rec or {}).get("event") or {}).get("created", ""))
    if rec is None or len(created) < 13:
        return None, "no readable imagelog record in the file (truncated, or not imagelog's)"
    fmt = str((rec.get("image") or {}).get("format", ""))
    try:
        codecs.get(fmt).decode(data)
    except UnknownFormat:
        pass  # a format this install cannot decode: the record is all there is to check
    except Exception as exc:
        return None, f"its {fmt} pixels do not decode ({type(exc).__name__})"
    return rec, None


def _shard_orphans(store: Store, key: str, indexed: set[int]) -> list[Finding]:
    """A shard's members without an index line, and its torn tail, as ``orphan`` findings."""
    try:
        found, end, torn = scan(store.get(key))
    except FileNotFoundError:
        return []
    out = [
        Finding(
            "orphan", key, f"member {m.name} at byte {m.offset}: no index line (reindex adopts it)"
        )
        for m in found
        if m.offset not in indexed
    ]
    if torn:
        detail = f"a torn tail after byte {end} (a writer killed mid-write; reindex cuts it)"
        out.append(Finding("orphan", key, detail))
    return out


# -- reindex ------------------------------------------------------------------------------------
@dataclasses.dataclass
class ReindexReport:
    """What ``reindex`` rebuilt, and the damage it kept visible."""

    images: int = 0
    records: int = 0
    events: int = 0
    segments: int = 0
    removed: int = 0
    unrecoverable: list[str] = dataclasses.field(default_factory=list)
    """Images without an index line that could not be adopted: each has a ``damaged`` event."""
    damaged: list[str] = dataclasses.field(default_factory=list)
    """Images whose bytes no longer match their record (kept as recorded: ``verify`` fails)."""
    missing: list[str] = dataclasses.field(default_factory=list)
    """Ids of records whose image is gone (kept: ``verify`` reports them missing)."""
    lone_sidecars: list[str] = dataclasses.field(default_factory=list)
    """Sidecars whose image was never written (a crash in between): moved to quarantine/."""
    cut: list[str] = dataclasses.field(default_factory=list)
    """Shards whose torn tail was cut back to their last whole member."""


def _reindex_shard(
    store: Store,
    key: str,
    report: ReindexReport,
    known: dict[tuple[str, int], tuple[str, dict[str, Any]]],
    keep: Callable[[str, dict[str, Any]], None],
    add: Callable[[str, str, str], None],
) -> None:
    """A shard, member by member, under reindex's rules: a member the old index knows keeps its
    record (``damaged`` when its bytes changed), another is adopted or named in a ``damaged``
    event; a torn tail is cut back to the last whole member (closing the tar)."""
    try:
        data = store.get(key)
    except FileNotFoundError:
        return
    found, end, torn = scan(data)
    if torn:
        store.put(key, data[:end] + TRAILER)
        report.cut.append(key)
    for m in found:
        report.images += 1
        body = data[m.offset : m.offset + m.size]
        old = known.pop((key, m.offset), None)
        if old is not None:
            seg, rec = old
            keep(seg, rec)
            report.records += 1
            file = rec.get("file") or {}
            want = (file.get("hash") or {}).get("sha256")
            if file.get("size") != len(body) or (want and hashlib.sha256(body).hexdigest() != want):
                report.damaged.append(f"{key}:{m.name}")
            continue
        adopted, why = adoptable(store, key, body, sidecar=False)
        if adopted is None:
            report.unrecoverable.append(f"{key}:{m.name}")
            event = _damaged_event(f"{key}:{m.name}", why or "unreadable")
            add(segment_key(_hour(key), "reindex"), event["event"]["id"], dumps(event))
            continue
        adopted["file"] = stored_file(
            adopted.get("file") or {}, key, body, sha256=True, offset=m.offset, member=m.name
        )
        created = str((adopted.get("event") or {}).get("created", ""))
        writer = str(adopted.setdefault("imagelog", {}).get("writer") or "reindex")
        add(segment_key(created[:13], writer), str((adopted.get("image") or {}).get("id", "")),
            dumps(adopted))  # fmt: skip
        report.records += 1


def reindex(store: Store, *, progress: Progress | None = None) -> ReindexReport:
    """Rebuild every index segment from the images' embedded records (or sidecars), keeping
    every record and damage the old index knows (see the module docstring).

    Run it on a run that no process writes to (``live_writers`` says which do): a live writer
    keeps appending to the segment file it opened, which the rebuilt segment replaces.
    """
    report = ReindexReport()
    listing = {o.key: o for o in store.list(IMAGES_PREFIX)}
    images = [k for k in listing if not k.endswith(".json")]  # lone sidecars: never acknowledged
    old = segment_keys(store)
    from .records import list_files, purged_ids

    compacted = list_files(store).keys()[1]  # rebuilt as JSON Lines, then removed
    known: dict[str, tuple[str, dict[str, Any]]] = {}  # image key -> (its segment, its record)
    members: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}  # (shard, offset) -> ...
    lines: dict[str, list[tuple[str, str]]] = {}
    old_lines: list[tuple[str, dict[str, Any]]] = []
    for key in old + compacted:
        try:
            data = store.get(key)
        except FileNotFoundError:
            continue
        if is_compacted(key):
            found: Iterable[tuple[Any, Any, dict[str, Any] | None]] = (
                (0, raw, rec) for raw, rec in parquet_records(data)
            )
        else:
            found = iter_segment_lines(data)
        old_lines.extend((key, rec) for _, _, rec in found if rec is not None)
    gone = purged_ids(store)  # the records engine's one reader of tombstones

    def keep(key: str, rec: dict[str, Any]) -> None:
        created = str((rec.get("event") or {}).get("created", ""))
        rid = str((rec.get("image") or {}).get("id") or (rec.get("event") or {}).get("id", ""))
        lines.setdefault(segment_key(created[:13], writer_of(key)), []).append((rid, dumps(rec)))

    for key, rec in old_lines:
        created = str((rec.get("event") or {}).get("created", ""))
        if len(created) < 13:
            continue
        if (rec.get("event") or {}).get("action") != "logged":
            keep(key, rec)  # drops, purges, damage found before
            report.events += 1
            continue
        path = str((rec.get("file") or {}).get("path", ""))
        rid = str((rec.get("image") or {}).get("id", ""))
        offset = (rec.get("file") or {}).get("offset")
        if path in listing and is_shard(path) and isinstance(offset, int):
            members[(path, offset)] = (key, rec)
        elif path in listing and not is_shard(path):
            known[path] = (key, rec)
        elif rid not in gone:
            keep(key, rec)  # its image is gone: the record stays, and verify says so
            report.missing.append(rid)

    def examine(key: str) -> tuple[str, Any]:
        """What an image is (read, hashed, decoded in a worker thread): ``("gone", None)``,
        ``("known", damaged?)``, ``("adopt", record)`` or ``("damaged", why)``."""
        try:
            data = store.get(key)
        except FileNotFoundError:
            return "gone", None
        if key in known:  # the record as acknowledged, file.size and file.hash included
            file = known[key][1].get("file") or {}
            want = (file.get("hash") or {}).get("sha256")
            size = file.get("size")
            changed = (size is not None and size != len(data)) or bool(
                want and hashlib.sha256(data).hexdigest() != want
            )
            return "known", changed
        adopted, why = adoptable(store, key, data, sidecar=key + ".json" in listing)
        if adopted is None:
            return "damaged", why or "unreadable"
        adopted["file"] = stored_file(adopted.get("file") or {}, key, data, sha256=True)
        return "adopt", adopted

    def add(segment: str, rid: str, line: str) -> None:
        lines.setdefault(segment, []).append((rid, line))

    for key in [k for k in images if is_shard(k)]:
        _reindex_shard(store, key, report, members, keep, add)
    for seg, rec in members.values():  # past a cut tail, or in a shard that is gone
        keep(seg, rec)
        report.missing.append(str((rec.get("image") or {}).get("id", "")))
    images = [k for k in images if not is_shard(k)]
    workers = max(1, os.cpu_count() or 1)  # the codecs and hashlib release the GIL
    with ThreadPoolExecutor(workers, thread_name_prefix="imagelog-reindex") as pool:
        for start in range(0, len(images), 64 * workers):  # bounded: results of one batch
            batch = images[start : start + 64 * workers]
            for i, (key, (what, result)) in enumerate(
                zip(batch, pool.map(examine, batch), strict=True), start
            ):
                if progress is not None:
                    progress(i, len(images))
                report.images += 1
                if what == "known":
                    seg, rec = known[key]
                    keep(seg, rec)
                    report.records += 1
                    if result:
                        report.damaged.append(key)
                elif what == "damaged":
                    report.unrecoverable.append(key)
                    event = _damaged_event(key, result)
                    lines.setdefault(segment_key(_hour(key), "reindex"), []).append(
                        (event["event"]["id"], dumps(event))
                    )
                elif what == "adopt":
                    meta = result.setdefault("imagelog", {})
                    if key + ".json" in listing:
                        meta["sidecar"] = key + ".json"
                    writer = str(meta.get("writer") or "reindex")
                    created = str((result.get("event") or {}).get("created", ""))
                    rid = str((result.get("image") or {}).get("id", ""))
                    lines.setdefault(segment_key(created[:13], writer), []).append(
                        (rid, dumps(result))
                    )
                    report.records += 1
    if progress is not None:
        progress(len(images), len(images))
    for key in listing:
        if key.endswith(".json") and key[:-5] not in listing:
            store.put(QUARANTINE_PREFIX + key, store.get(key))
            store.delete([key])
            report.lone_sidecars.append(key)
    for key, items in sorted(lines.items()):
        items.sort()
        store.put(key, "".join(line + "\n" for _, line in items).encode("utf-8"))
        report.segments += 1
    stale = [k for k in old if k not in lines and k.startswith(INDEX_PREFIX)] + compacted
    store.delete(stale)
    report.removed = len(stale)
    return report


def _hour(key: str) -> str:
    """The hour of an image key (its folder), or of now for a key outside the layout."""
    import time

    return hour_of_key(key) or iso_utc(time.time_ns())[:13]


def _damaged_event(key: str, why: str) -> dict[str, Any]:
    """The ``damaged`` event ``reindex`` leaves for an image it cannot adopt: at the start of the
    image's hour (so retention purges them together), naming its path."""
    import time

    now = time.time_ns()
    hour = _hour(key)
    at = hour_end_ns(hour) - 3600 * 10**9
    return damaged_record(now_ns=now, at_ns=at, rid=uuid7(now), path=key,
                          message=f"reindex could not adopt {key}: {why}")  # fmt: skip

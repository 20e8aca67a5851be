"""The run audit and the rebuild: ``verify`` a run against its files, ``reindex`` it from its images.

Verify. Every index line is checked against its file (present, size, SHA-256, a sample decoded),
torn lines are reported, and files without a line are listed as orphans. (Not to be confused
with the ``verify=`` setting of ``imagelog.open()``, the write-time decode check of
``imagelog._verify``.)

Reindex. Every image carries its own record (PNG iTXt, XMP, a TIFF tag, or a ``.json`` sidecar),
so the index can be rebuilt from the images alone: ``file.path``, ``file.size`` and ``file.hash``
are recomputed from the file; event lines (drops, purges) that are still readable in the old
index are kept; a sidecar whose image was never written goes to ``quarantine/``.

Shards (``imagelog._shards``) are read member by member: verify checks each record's member
against the shard, lists members without a line as orphans and a torn tail (a writer killed
mid-write) as an orphan too; reindex indexes every whole member and cuts a torn tail back to
the last one (and closes the tar), so no line ever points past it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ._shards import TRAILER, member_range, read_file, scan
from .codecs import embedded_record
from .index.reader import iter_segment_lines, parquet_records, segment_keys
from .layout import (
    IMAGES_PREFIX,
    INDEX_PREFIX,
    QUARANTINE_PREFIX,
    is_compacted,
    is_shard,
    segment_key,
    writer_of,
)
from .record import dumps, stored_file
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
    """One problem: ``kind`` is missing, size, hash, decode, torn or orphan."""

    kind: str
    key: str
    detail: str = ""


DAMAGE = ("missing", "size", "hash", "decode", "torn")


@dataclasses.dataclass
class VerifyReport:
    """What ``verify`` found. Orphans (whole files without an index line, left by a crash
    between rename and index append) are reported but are not damage: ``reindex`` adopts them.
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
    logged = [r for r in logged if (r.get("image") or {}).get("id") not in gone]
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
            report.findings.append(Finding("orphan", key, "no index line (reindex adopts it)"))
        elif key[:-5] not in listing:
            detail = "a sidecar without its image (a crash before the image was written)"
            report.findings.append(Finding("orphan", key, detail))
    return report


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
    """What ``reindex`` rebuilt."""

    images: int = 0
    records: int = 0
    events: int = 0
    segments: int = 0
    removed: int = 0
    unrecoverable: list[str] = dataclasses.field(default_factory=list)
    lone_sidecars: list[str] = dataclasses.field(default_factory=list)
    """Sidecars whose image was never written (a crash in between): moved to quarantine/."""
    cut: list[str] = dataclasses.field(default_factory=list)
    """Shards whose torn tail was cut back to their last whole member."""


def _reindex_shard(
    store: Store, key: str, report: ReindexReport, lines: dict[str, list[tuple[str, str]]]
) -> None:
    """Index a shard's whole members; cut a torn tail back to the last one (closing the tar)."""
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
        try:
            rec = embedded_record(body)
        except ValueError:
            rec = None
        created = str(((rec or {}).get("event") or {}).get("created", ""))
        if rec is None or len(created) < 13:
            report.unrecoverable.append(f"{key}:{m.name}")
            continue
        rec["file"] = stored_file(
            rec.get("file") or {}, key, body, sha256=True, offset=m.offset, member=m.name
        )
        meta = rec.setdefault("imagelog", {})
        writer = str(meta.get("writer") or "reindex")
        rid = str((rec.get("image") or {}).get("id", ""))
        lines.setdefault(segment_key(created[:13], writer), []).append((rid, dumps(rec)))
        report.records += 1


def reindex(store: Store, *, progress: Progress | None = None) -> ReindexReport:
    """Rebuild every index segment from the images' embedded records (or sidecars).

    Run it on a run that no process writes to (``live_writers`` says which do): a live writer
    keeps appending to the segment file it opened, which the rebuilt segment replaces.
    """
    report = ReindexReport()
    listing = {o.key: o for o in store.list(IMAGES_PREFIX)}
    images = [k for k in listing if not k.endswith(".json")]  # lone sidecars: never acknowledged
    lines: dict[str, list[tuple[str, str]]] = {}
    for i, key in enumerate(images):
        if progress is not None:
            progress(i, len(images))
        if is_shard(key):
            _reindex_shard(store, key, report, lines)
            continue
        report.images += 1
        try:
            data = store.get(key)
        except FileNotFoundError:
            continue
        sidecar = key + ".json"
        rec: dict[str, Any] | None
        try:
            if sidecar in listing:
                loaded = json.loads(store.get(sidecar))
                rec = loaded if isinstance(loaded, dict) else None
            else:
                rec = embedded_record(data)
        except (ValueError, FileNotFoundError):
            rec = None
        created = str(((rec or {}).get("event") or {}).get("created", ""))
        if rec is None or len(created) < 13:
            report.unrecoverable.append(key)
            continue
        rec["file"] = stored_file(rec.get("file") or {}, key, data, sha256=True)
        meta = rec.setdefault("imagelog", {})
        if sidecar in listing:
            meta["sidecar"] = sidecar
        writer = str(meta.get("writer") or "reindex")
        rid = str((rec.get("image") or {}).get("id", ""))
        lines.setdefault(segment_key(created[:13], writer), []).append((rid, dumps(rec)))
        report.records += 1
    if progress is not None:
        progress(len(images), len(images))
    for key in listing:
        if key.endswith(".json") and key[:-5] not in listing:
            store.put(QUARANTINE_PREFIX + key, store.get(key))
            store.delete([key])
            report.lone_sidecars.append(key)
    old = segment_keys(store)
    from .records import list_files

    compacted = list_files(store).keys()[1]  # rebuilt as JSON Lines, then removed
    for key in old + compacted:  # keep the event lines (drops, purges) the old index holds
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
        for _, _, rec in found:
            if rec is None or (rec.get("event") or {}).get("action") == "logged":
                continue
            created = str((rec.get("event") or {}).get("created", ""))
            if len(created) < 13:
                continue
            rid = str((rec.get("image") or {}).get("id") or (rec.get("event") or {}).get("id", ""))
            target = segment_key(created[:13], writer_of(key))
            lines.setdefault(target, []).append((rid, dumps(rec)))
            report.events += 1
    for key, items in sorted(lines.items()):
        items.sort()
        store.put(key, "".join(line + "\n" for _, line in items).encode("utf-8"))
        report.segments += 1
    stale = [k for k in old if k not in lines and k.startswith(INDEX_PREFIX)] + compacted
    store.delete(stale)
    report.removed = len(stale)
    return report

"""The run's on-disk layout: every key a run holds, and how to read one back.

The bottom floor of the house: it imports nothing from the package, and every module that names
or parses a key asks it. A run looks like::

    imagelog.json                                         the manifest (MANIFEST)
    index/<YYYY-MM-DDTHH>_<writer>.jsonl                  one segment per writer per hour
    index/<YYYY-MM-DDTHH>_<writer>.<part>.jsonl           its parts, on object stores
    index/<YYYY-MM-DDTHH>_kept.jsonl                      lines of kept files of a purged hour
    index/<YYYY-MM-DDTHH>_<writer>.summary.json           a closed segment's counts (records.summary)
    index/date=<YYYY-MM-DD>/hour=<HH>/<writer>.parquet    a compacted hour (imagelog.compact)
    images/<YYYY>/<MM>/<DD>/<HH>/<source>/<HHMMSS>_<usec>_<seq>_<writer>.<ext>
    images/<YYYY>/<MM>/<DD>/<HH>/_shards/<writer>.<n>.tar  small images packed (imagelog._shards)
    quarantine/<segment name>.<n>.torn                    torn lines moved out of a segment
    triggers/<trigger id>.json                            a ring trigger from outside the process
    select/<source>-<hash>/<per>/<window>/<n>             a budget claim of ``select=`` (one per frame)
    triggers/<writer>.alive                               a live ring writer's announcement

An *hour* (``YYYY-MM-DDTHH``, UTC, log time) is the unit of partitioning and of retention; a
*writer* is one process's id (``<hex>-<pid>``).
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import re
import time

__all__ = [
    "IMAGES_PREFIX",
    "INDEX_PREFIX",
    "KEPT_WRITER",
    "LAYOUT",
    "MANIFEST",
    "QUARANTINE_PREFIX",
    "SELECT_PREFIX",
    "TRIGGERS_PREFIX",
    "alive_key",
    "compacted_key",
    "compacted_prefix",
    "hour_end_ns",
    "hour_of",
    "hour_of_key",
    "image_key",
    "images_prefix",
    "is_compacted",
    "is_segment",
    "is_shard",
    "is_summary",
    "part_key",
    "quarantine_key",
    "segment_key",
    "segment_name",
    "select_claim_key",
    "select_window_prefix",
    "shard_key",
    "source_dir",
    "summary_key",
    "trigger_key",
    "writer_of",
    "writer_pid",
]

#: The run manifest, at the run's root.
MANIFEST = "imagelog.json"
#: Where image files (and pass-through sidecars) live.
IMAGES_PREFIX = "images/"
#: Where index segments live.
INDEX_PREFIX = "index/"
#: Where torn index lines and lone sidecars are moved by repair and reindex.
QUARANTINE_PREFIX = "quarantine/"
#: Where ``imagelog trigger`` leaves triggers for the run's ring writers, and where those writers
#: announce themselves (``_trigger_files``: polled, removed after ten minutes).
TRIGGERS_PREFIX = "triggers/"
#: Where the budget claims of ``select=`` live (small objects, one per frame a budget let in).
SELECT_PREFIX = "select/"
#: The writer name of the segment that holds the lines of kept files of a purged hour.
KEPT_WRITER = "kept"
#: The layout as the manifest states it.
LAYOUT = {
    "index": "index/<YYYY-MM-DDTHH>_<writer>.jsonl",
    "images": "images/<YYYY>/<MM>/<DD>/<HH>/<source>/<HHMMSS>_<usec>_<seq>_<writer>.<ext>",
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SEGMENT_RE = re.compile(r"^index/(\d{4}-\d\d-\d\dT\d\d)_([^/]+)\.jsonl$")
_IMAGE_RE = re.compile(r"^images/(\d{4})/(\d\d)/(\d\d)/(\d\d)/")
_SUMMARY_RE = re.compile(r"^index/(\d{4}-\d\d-\d\dT\d\d)_([^/.]+)\.summary\.json$")
_SHARD_RE = re.compile(r"^images/\d{4}/\d\d/\d\d/\d\d/_shards/[^/]+\.tar$")
_COMPACTED_RE = re.compile(r"^index/date=(\d{4}-\d\d-\d\d)/hour=(\d\d)/([^/]+)\.parquet$")


# -- hours ------------------------------------------------------------------------------------
def hour_of(created_ns: int) -> str:
    """The UTC hour of a nanosecond timestamp, as used in segment names and image folders.

    >>> hour_of(1_764_010_800 * 10**9)
    '2025-11-24T19'
    """
    return _hour_of_hour(created_ns // 3_600_000_000_000)


@functools.lru_cache(maxsize=16)
def _hour_of_hour(hours: int) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(hours * 3600))


def hour_end_ns(hour: str) -> int:
    """The end (exclusive) of an hour, in Unix nanoseconds."""
    t = time.strptime(hour, "%Y-%m-%dT%H")
    return (calendar.timegm(t) + 3600) * 1_000_000_000


def hour_of_key(key: str) -> str | None:
    """The hour (``YYYY-MM-DDTHH``) of an image or index key, or None.

    >>> hour_of_key("images/2026/11/24/19/cam1/x.png"), hour_of_key("index/2026-11-24T19_w.jsonl")
    ('2026-11-24T19', '2026-11-24T19')
    """
    m = _IMAGE_RE.match(key)
    if m:
        return f"{m[1]}-{m[2]}-{m[3]}T{m[4]}"
    m = _SEGMENT_RE.match(key)
    if m:
        return m[1]
    m = _SUMMARY_RE.match(key)
    if m:
        return m[1]
    m = _COMPACTED_RE.match(key)
    return f"{m[1]}T{m[2]}" if m else None


# -- images -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def source_dir(source: str) -> str:
    """A source name made safe for one path component (the record keeps the original)."""
    safe = _UNSAFE.sub("_", source).strip("._")
    return safe[:64] or "_"


def image_key(created_ns: int, source: str, seq: int, writer: str, ext: str) -> str:
    """``images/YYYY/MM/DD/HH/<source>/<HHMMSS>_<usec>_<seq>_<writer>.<ext>`` (UTC, log time)."""
    sec, rem = divmod(created_ns, 1_000_000_000)
    folder, stamp = _second_parts(sec)
    return f"{folder}{source_dir(source)}/{stamp}_{rem // 1000:06d}_{seq:09d}_{writer}.{ext}"


@functools.lru_cache(maxsize=64)
def _second_parts(sec: int) -> tuple[str, str]:
    t = time.gmtime(sec)
    return (
        f"images/{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d}/{t.tm_hour:02d}/",
        f"{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}",
    )


def shard_key(hour: str, writer: str, n: int) -> str:
    """A writer's ``n``-th shard of an hour: ``images/YYYY/MM/DD/HH/_shards/<writer>.<n>.tar``.

    Source folders never start with ``_`` (``source_dir``), so ``_shards`` is no source's.

    >>> shard_key("2026-11-24T19", "ab12cd34-77", 3)
    'images/2026/11/24/19/_shards/ab12cd34-77.000003.tar'
    """
    return f"{images_prefix(hour)}_shards/{writer}.{n:06d}.tar"


def is_shard(key: str) -> bool:
    """Whether a key is a shard of small images (a tar file under an hour's ``_shards/``)."""
    return _SHARD_RE.match(key) is not None


def images_prefix(hour: str) -> str:
    """The image folder of an hour: ``images/YYYY/MM/DD/HH/``."""
    return f"{IMAGES_PREFIX}{hour[0:4]}/{hour[5:7]}/{hour[8:10]}/{hour[11:13]}/"


# -- index segments ---------------------------------------------------------------------------
def segment_key(hour: str, writer: str) -> str:
    """``index/2026-11-24T19_<writer>.jsonl``: sorts by hour, one file per writer per hour."""
    return f"{INDEX_PREFIX}{hour}_{writer}.jsonl"


def is_segment(key: str) -> bool:
    """Whether a key is an index segment or a part of one (``index/<hour>_<writer>[.<part>].jsonl``)."""
    return _SEGMENT_RE.match(key) is not None


def summary_key(hour: str, writer: str) -> str:
    """The summary a writer leaves when it closes an hour's segment (counts, bytes, span).

    >>> summary_key("2026-11-24T19", "ab12cd34-77")
    'index/2026-11-24T19_ab12cd34-77.summary.json'
    """
    return f"{INDEX_PREFIX}{hour}_{writer}.summary.json"


def is_summary(key: str) -> bool:
    """Whether a key is a segment's summary (``summary_key``)."""
    return _SUMMARY_RE.match(key) is not None


def compacted_prefix(hour: str) -> str:
    """The folder of an hour's compacted files: ``index/date=YYYY-MM-DD/hour=HH/``."""
    return f"{INDEX_PREFIX}date={hour[:10]}/hour={hour[11:13]}/"


def compacted_key(hour: str, writer: str) -> str:
    """One writer's compacted hour (hive-partitioned, so engines read ``index/**/*.parquet``).

    >>> compacted_key("2026-11-24T19", "ab12cd34-77")
    'index/date=2026-11-24/hour=19/ab12cd34-77.parquet'
    """
    return f"{compacted_prefix(hour)}{writer}.parquet"


def is_compacted(key: str) -> bool:
    """Whether a key is a compacted hour's Parquet file."""
    return _COMPACTED_RE.match(key) is not None


def segment_name(key: str) -> str:
    """The file name of a segment key, without its folder."""
    return key.rsplit("/", 1)[-1]


def part_key(segment_key: str, part: int) -> str:
    """``index/<hour>_<writer>.jsonl`` and 3 -> ``index/<hour>_<writer>.000003.jsonl``."""
    base = segment_key.removesuffix(".jsonl")
    return f"{base}.{part:06d}.jsonl"


def quarantine_key(segment_key: str, n: int) -> str:
    """Where the ``n``-th batch of torn lines of a segment goes: ``quarantine/<name>.<n>.torn``."""
    return f"{QUARANTINE_PREFIX}{segment_name(segment_key)}.{n}.torn"


# -- writers ----------------------------------------------------------------------------------
def writer_of(key: str) -> str:
    """The writer of a segment key, with or without a part number (object stores).

    >>> writer_of("index/2026-11-24T19_ab12cd34-77.jsonl"), writer_of("index/2026-11-24T19_ab12cd34-77.000003.jsonl")
    ('ab12cd34-77', 'ab12cd34-77')
    """
    name = segment_name(key).removesuffix(".jsonl")
    return name.split("_", 1)[-1].split(".", 1)[0]


def writer_pid(writer: str) -> int | None:
    """The process id in a writer id (``<hex>-<pid>``), or None if it has none.

    >>> writer_pid("ab12cd34-77"), writer_pid("kept")
    (77, None)
    """
    _, _, pid_text = writer.rpartition("-")
    return int(pid_text) if pid_text.isdigit() else None


def alive_key(writer: str) -> str:
    """Where a ring writer announces itself to ``imagelog trigger``: ``triggers/<writer>.alive``."""
    return f"{TRIGGERS_PREFIX}{writer}.alive"


def trigger_key(trigger_id: str) -> str:
    """Where an outside trigger is left for the writers: ``triggers/<id>.json``."""
    return f"{TRIGGERS_PREFIX}{trigger_id}.json"


def select_window_prefix(source: str, per: str, window: str) -> str:
    """The claims of one budget window of a source: ``select/<source>-<hash>/<per>/<window>/``
    (the hash keeps sources that ``source_dir`` maps to one name apart)."""
    tag = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{SELECT_PREFIX}{source_dir(source)}-{tag}/{per}/{window}/"


def select_claim_key(source: str, per: str, window: str, n: int) -> str:
    """Budget claim ``n`` (0-based) of a window: created once, by the writer that got it."""
    return f"{select_window_prefix(source, per, window)}{n:07d}"

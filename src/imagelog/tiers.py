"""Retention tiers: each frame moves down a ladder of steps by age (log time), in place, with its
record, its id and its history.

A step (``Tier``) re-encodes (``format=``), thins (``thin=``: at most one frame per interval),
shrinks (``thumbnail=``: at most N pixels on the longest side) or deletes (``delete=True``);
``max_bytes=`` caps the bytes of the frames in a step's tier (the oldest move on early). Frames
labelled ``keep`` (or kept by ``open(keep=)``) are exempt from every step.

A pass (``run_pass``), for each index hour whose frames crossed a step since it was last seen:

1. ``delete``: a ``purged`` event (reason ``tier``) listing the ids, then the files go; an hour
   with no frame left is then removed whole (its index files too).
2. ``thin``: per source and interval, the frame labelled ``keep``, else one saved by a trigger,
   else the first stays; a ``thinned`` summary lists the others (ids and ``image.seq`` ranges),
   then their files go.
3. ``format``/``thumbnail`` (the latest such step the frame reached): the new file is written
   whole (``<old name>.t<step>.<ext>``, the record embedded), then a ``tiered`` event is appended
   to the index (it supersedes the record's ``file.*`` and ``image.*``: the records engine
   applies it for every reader), then the old file is removed.

Events go into the frame's own hour (a segment of a writer id new to each pass), so a whole-hour
purge takes them with the frame. A ``kill -9`` anywhere leaves each frame readable once: a new
file with no event is an orphan the next pass removes; an old file whose event was written, or
whose id a tombstone lists, is removed by the next pass. One pass runs at a time per run (a
lease, ``tiers.lock``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np

from . import codecs
from .errors import InvalidSetting
from .ids import new_writer_id, uuid7
from .inputs import parse_time_ns
from .layout import hour_end_ns, hour_of, images_prefix, segment_key
from .record import (
    dumps,
    iso_utc,
    ordered,
    purged_record,
    stored_file,
    thinned_record,
    tiered_record,
)
from .retention import keeps_by_label
from .settings import parse_bytes, parse_duration
from .stores.base import Segment, Store

__all__ = [
    "LADDER_KEY",
    "Ladders",
    "Tier",
    "TierReport",
    "TierWorker",
    "history",
    "ladders_of",
    "load_ladders",
    "run_pass",
    "save_ladders",
    "tier_key",
]

#: Where a writer opened with ``tiers=`` leaves its ladder, for ``imagelog tier RUN``.
LADDER_KEY = "tiers.json"

logger = logging.getLogger("imagelog")

_TIER_SUFFIX = re.compile(r"\.t\d+$")
#: Writer ids of tier passes start with this (``tier<hex>-<pid>``): their segments hold the
#: tombstones, so a dropped hour loses them last.
TIER_WRITER_PREFIX = "tier"
#: The lease one pass holds on a run (``tiers.lock``) and how long it lasts unrenewed; a lease
#: of a dead process on this host is stale at once.
LOCK_KEY = "tiers.lock"
LEASE_S = 600.0
#: How long a pass on an object store waits after writing its lease before reading it back
#: (two passes that wrote at once: the last one written wins, the other backs off).
LEASE_SETTLE_S = 0.5
#: Frames re-encoded between two index appends (each batch: files, then lines, then removals).
BATCH = 32
#: A writer's tier thread: CPU seconds per pass, the share of one core it may use while it has
#: work, how long it waits when nothing is left to do, and its nice increment.
PASS_BUDGET_S = 1.0
CPU_SHARE = 0.5
IDLE_WAIT_S = 60.0
TIER_NICE = 10


@dataclasses.dataclass(frozen=True)
class Tier:
    """One step of a retention ladder, taken once a frame is ``after`` old (log time).

    Exactly one of ``format`` (a preset or codec spec), ``thin`` (an interval), ``thumbnail``
    (pixels, longest side; ``format`` may go with it, else the format of the last re-encode
    step before it, else ``"preview"``) or ``delete=True``. ``max_bytes`` caps the bytes of the
    frames in this step's tier: past it, the oldest go on to the next step early (past the last
    step: deleted).

    >>> Tier(after="1d", format="preview").after_s, Tier(after="7d", thin="10s").thin_s
    (86400.0, 10.0)
    """

    after: str | float | timedelta
    format: str | None = None
    thin: str | float | timedelta | None = None
    thumbnail: int | None = None
    delete: bool = False
    max_bytes: int | str | None = None
    after_s: float = dataclasses.field(init=False, repr=False, compare=False)
    thin_s: float | None = dataclasses.field(init=False, repr=False, compare=False)
    cap: int | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        after = parse_duration(self.after, name="Tier after")
        thin = None if self.thin is None else parse_duration(self.thin, name="Tier thin")
        cap = None if self.max_bytes is None else parse_bytes(self.max_bytes, name="Tier max_bytes")
        kinds = [k for k, on in (("thin", thin is not None), ("thumbnail", self.thumbnail is not None),
                                 ("delete", bool(self.delete))) if on]  # fmt: skip
        if self.format is not None and kinds and kinds != ["thumbnail"]:
            kinds.append("format")
        if len(kinds) > 1:
            raise InvalidSetting(f"a Tier does one thing; this one asks for {' and '.join(kinds)}")
        if not kinds and self.format is None:
            raise InvalidSetting(
                "a Tier needs format=, thin=, thumbnail= or delete=True, e.g. "
                "Tier(after='1d', format='preview')"
            )
        if thin is not None and thin <= 0:
            raise InvalidSetting(
                f"Tier thin must be a positive interval such as '10s', got {self.thin!r}"
            )
        pixels: object = self.thumbnail  # a careless caller passes anything
        if pixels is not None and (
            isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1
        ):
            raise InvalidSetting(
                f"Tier thumbnail must be a positive number of pixels, got {self.thumbnail!r}"
            )
        if self.format is not None:
            if not isinstance(self.format, str):
                raise TypeError(
                    f"Tier format must be a string such as 'preview', not {self.format!r}"
                )
            name, params = codecs.parse_spec(self.format)
            if name.lower() not in codecs.PRESETS:  # UnknownFormat names the formats, and
                codecs.get(name).params(params)  # FormatMismatch a parameter it lacks
        object.__setattr__(self, "after_s", after)
        object.__setattr__(self, "thin_s", thin)
        object.__setattr__(self, "cap", cap)

    @property
    def kind(self) -> str:
        """``format``, ``thin``, ``thumbnail`` or ``delete``."""
        if self.delete:
            return "delete"
        if self.thin_s is not None:
            return "thin"
        return "thumbnail" if self.thumbnail is not None else "format"

    @property
    def label(self) -> str:
        """The step's age as written (``"1d"``), for records."""
        return self.after if isinstance(self.after, str) else f"{self.after_s:g}s"

    def describe(self) -> str:
        """The step in words: ``after 1d: format preview``."""
        kind = self.kind
        if kind == "thin":
            what = f"thin to one frame per {self.thin_s:g} s"
        elif kind == "thumbnail":
            what = f"thumbnail {self.thumbnail} px" + (f" ({self.format})" if self.format else "")
        else:
            what = "delete" if kind == "delete" else f"format {self.format}"
        cap = f", max_bytes {self.cap}" if self.cap is not None else ""
        return f"after {self.label}: {what}{cap}"


Ladder = tuple[Tier, ...]


@dataclasses.dataclass(frozen=True)
class Ladders:
    """The ladder of each source (``default``: sources not named)."""

    default: Ladder = ()
    by_source: Mapping[str, Ladder] = dataclasses.field(default_factory=dict)

    def of(self, source: str) -> Ladder:
        """The ladder frames of ``source`` go down."""
        return self.by_source.get(source, self.default)

    def all(self) -> list[Ladder]:
        """Every ladder (non-empty)."""
        return [lad for lad in (self.default, *self.by_source.values()) if lad]

    def __bool__(self) -> bool:
        return bool(self.all())


def _ladder(steps: object, where: str) -> Ladder:
    if isinstance(steps, Tier):
        steps = [steps]
    if not isinstance(steps, list | tuple):
        raise TypeError(f"{where} must be a list of imagelog.Tier, not {type(steps).__name__}")
    for s in steps:
        if not isinstance(s, Tier):
            raise TypeError(f"{where} must hold imagelog.Tier steps, got {type(s).__name__}")
    ladder = tuple(steps)
    for a, b in itertools.pairwise(ladder):
        if b.after_s <= a.after_s:
            raise InvalidSetting(
                f"{where}: steps must be in order of age; ({b.describe()}) is listed after "
                f"({a.describe()})"
            )
    for s in ladder[:-1]:
        if s.delete:
            raise InvalidSetting(f"{where}: a delete step must be the last ({s.describe()})")
    return ladder


def ladders_of(tiers: object) -> Ladders:
    """Check ``tiers=``: a list of ``Tier`` (every source) or ``{source: [Tier, ...]}`` (``"*"``:
    sources not named)."""
    if tiers is None:
        return Ladders()
    if isinstance(tiers, Mapping):
        by = {}
        for src, steps in tiers.items():
            if not isinstance(src, str) or not src:
                raise InvalidSetting(f"tiers as a mapping takes source names, got {src!r}")
            by[src] = _ladder(steps, f"tiers[{src!r}]")
        default = by.pop("*", ())
        return Ladders(default, by)
    return Ladders(_ladder(tiers, "tiers"))


def _step_json(step: Tier) -> dict[str, Any]:
    out: dict[str, Any] = {"after": step.label}
    if step.format is not None:
        out["format"] = step.format
    if step.thin_s is not None:
        out["thin"] = step.thin if isinstance(step.thin, str) else step.thin_s
    if step.thumbnail is not None:
        out["thumbnail"] = step.thumbnail
    if step.delete:
        out["delete"] = True
    if step.cap is not None:
        out["max_bytes"] = step.cap
    return out


def save_ladders(store: Store, ladders: Ladders) -> None:
    """Leave the ladders in the run (``tiers.json``), so ``imagelog tier RUN`` uses them."""
    data = {"default": [_step_json(s) for s in ladders.default],
            "sources": {k: [_step_json(s) for s in v] for k, v in ladders.by_source.items()}}  # fmt: skip
    store.put(LADDER_KEY, (dumps(data) + "\n").encode("utf-8"))


def load_ladders(store: Store) -> Ladders:
    """The ladders a writer left in the run (empty if none)."""
    import json

    try:
        data = json.loads(store.get(LADDER_KEY))
    except (FileNotFoundError, ValueError):
        return Ladders()
    if not isinstance(data, dict):
        return Ladders()
    default = _ladder([Tier(**s) for s in data.get("default") or []], "tiers.json")
    by = {k: _ladder([Tier(**s) for s in v], f"tiers.json {k!r}")
          for k, v in (data.get("sources") or {}).items()}  # fmt: skip
    return Ladders(default, by)


def history(store: Store, rid: str) -> list[dict[str, Any]]:
    """Every index line that names an image id, in the order it happened: its ``logged`` record
    as written, then ``tiered``, ``thinned``, ``purged`` and ``encoding_warning`` events."""
    from .records import iter_json, with_retry

    def rows(con: Any) -> list[Any]:
        sql = ("SELECT CAST(record AS VARCHAR) FROM _all WHERE id = ? OR (action <> 'logged' "
               "AND contains(CAST(record AS VARCHAR), ?)) ORDER BY created, id")  # fmt: skip
        return list(iter_json(con, sql, [rid, f'"{rid}"']))

    return [r for r in with_retry(store, rows) if isinstance(r, dict)]


def tier_key(key: str, step: int, ext: str) -> str:
    """The key of a frame's file at a step: ``<name>.t<step>.<ext>`` beside the original."""
    base, _, _ = key.rpartition(".")
    return f"{_TIER_SUFFIX.sub('', base)}.t{step}.{ext}"


@dataclasses.dataclass
class TierReport:
    """What a pass did (or, with ``dry_run``, would do)."""

    as_of: str = ""
    hours: int = 0
    frames: int = 0
    tiered: int = 0
    thinned: int = 0
    deleted: int = 0
    failed: int = 0
    exempt: int = 0
    cleaned: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    cpu_s: float = 0.0
    done: bool = True
    dry_run: bool = False
    busy: bool = False
    """Another pass held the run: this one did nothing."""
    by_step: dict[str, int] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)

    def count(self, step: int, tier: Tier, n: int = 1) -> None:
        """Count ``n`` frames for a step."""
        name = f"{step}: {tier.describe()}"
        self.by_step[name] = self.by_step.get(name, 0) + n


# -- the pass -------------------------------------------------------------------------------
class _Events:
    """Index lines of one pass, appended to the frame's hour (one writer id per pass)."""

    def __init__(self, store: Store, writer: str = "") -> None:
        self.store = store
        self.writer = writer or TIER_WRITER_PREFIX + new_writer_id()
        self._segments: dict[str, Segment] = {}

    def append(self, hour: str, recs: Sequence[Mapping[str, Any]]) -> None:
        if not recs:
            return
        seg = self._segments.get(hour)
        if seg is None:
            seg = self._segments[hour] = self.store.open_segment(segment_key(hour, self.writer))
        seg.append("".join(dumps(r) + "\n" for r in recs).encode("utf-8"))
        seg.flush()

    def close(self) -> None:
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()


def _seq_ranges(seqs: Iterable[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def _created_ns(rec: Mapping[str, Any]) -> int:
    created = (rec.get("event") or {}).get("created") or rec.get("@timestamp")
    return parse_time_ns(_parse_iso(str(created)))


def _parse_iso(text: str) -> Any:
    import datetime as _dt

    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _current_after(rec: Mapping[str, Any]) -> float:
    """The age of the step that made the frame's current file (0: as logged)."""
    tier = (rec.get("imagelog") or {}).get("tier") or {}
    after = tier.get("after")
    if after is None:
        return 0.0
    try:
        return parse_duration(after if isinstance(after, str | int | float) else str(after))
    except (InvalidSetting, TypeError):
        return 0.0


def _thumbnail_format(ladder: Ladder, index: int) -> str:
    step = ladder[index]
    if step.format is not None:
        return step.format
    for prev in reversed(ladder[:index]):
        if prev.kind == "format" and prev.format is not None:
            return prev.format
    return "preview"


def _shrink(arr: np.ndarray[Any, Any], longest: int) -> np.ndarray[Any, Any]:
    h, w = arr.shape[:2]
    scale = longest / max(h, w)
    if scale >= 1:
        return arr
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[2] in (3, 4)):
        from PIL import Image

        return np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))
    rows = (np.arange(size[1]) * h / size[1]).astype(np.intp)
    cols = (np.arange(size[0]) * w / size[0]).astype(np.intp)
    return np.ascontiguousarray(arr[rows][:, cols])


_DROPPED_IMAGE = ("format", "lossless", "encoder", "pixel_format", "stride", "bit_depth", "layout")


def _reencode(
    run: Any, rec: Mapping[str, Any], spec: str, thumbnail: int | None, step: int, after: str,
    eid: str,
) -> tuple[str, bytes, dict[str, Any], dict[str, Any], str | None]:  # fmt: skip
    """The frame at a step: (key, bytes, file, image, sidecar bytes or None)."""
    image = rec.get("image") or {}
    arr = run.load(dict(rec), convert="rgb" if image.get("pixel_format") else None)
    if thumbnail is not None:
        arr = _shrink(arr, thumbnail)
    arr = np.ascontiguousarray(arr)
    channels = 1 if arr.ndim == 2 else int(arr.shape[2])
    dtype = "bool" if arr.dtype == np.bool_ else str(arr.dtype)
    codec, params = codecs.resolve(spec, dtype=dtype, channels=channels)
    new_image = {k: v for k, v in image.items() if k not in _DROPPED_IMAGE}
    new_image.update(
        width=int(arr.shape[1]), height=int(arr.shape[0]), channels=channels, dtype=dtype,
        channel_order={1: "L", 3: "RGB", 4: "RGBA"}.get(channels, image.get("channel_order", "")),
        format=codec.name, lossless=codec.is_lossless(params),
        encoder={"name": codec.library or codec.name, "version": codec.version, "params": params},
    )  # fmt: skip
    key = tier_key(str((rec.get("file") or {})["path"]), step, codec.extension)
    file = {"path": key, "mime_type": codec.mime_type, "extension": codec.extension}
    body = {k: v for k, v in rec.items() if k not in ("file", "image")}
    body["file"], body["image"] = file, new_image
    body["imagelog"] = {**(rec.get("imagelog") or {}), "tier": {"step": step, "after": after,
                                                                 "event": eid}}  # fmt: skip
    body["imagelog"].pop("sidecar", None)
    text = dumps(ordered(body))
    pixels = arr.astype(np.uint8) if dtype == "bool" and codec.name != "png" else arr
    data, embedded = codec.encode_with_record(pixels, params, text)
    return key, data, file, new_image, None if embedded else text


def _keep(rec: Mapping[str, Any], keep: Callable[[Mapping[str, Any]], bool] | None) -> bool:
    if keeps_by_label(rec):
        return True
    if keep is None:
        return False
    try:
        return bool(keep(rec))
    except Exception:
        return True  # a keep rule that raises keeps the record, as retention does


def _triggered(rec: Mapping[str, Any]) -> bool:
    return bool((rec.get("labels") or {}).get("trigger"))


def _hours_due(
    hours: Iterable[str], ladders: Ladders, now_ns: int, seen: Mapping[str, int]
) -> list[str]:
    """Hours in which some frame crossed a step since the hour was last settled (``seen``)."""
    afters = sorted({int(s.after_s * 1e9) for lad in ladders.all() for s in lad})
    out = []
    for hour in hours:
        end = hour_end_ns(hour)
        start = end - 3_600_000_000_000
        last = seen.get(hour)
        for a in afters:
            if start + a <= now_ns and (last is None or end + a > last):
                out.append(hour)
                break
    return out


def _promoted(store: Store, ladders: Ladders, now_ns: int) -> dict[str, int]:
    """Frames a step's ``max_bytes`` sends on early: id -> the step index they go to."""
    from .records import iter_json, with_retry

    out: dict[str, int] = {}
    for src_ladder in [(None, ladders.default), *ladders.by_source.items()]:
        source, ladder = src_ladder
        for i, step in enumerate(ladder):
            if step.cap is None or step.delete:
                continue
            lo = now_ns - int(step.after_s * 1e9)
            hi = None if i + 1 == len(ladder) else now_ns - int(ladder[i + 1].after_s * 1e9)
            cond = ["action = 'logged'", f"created < CAST('{iso_utc(lo)}' AS TIMESTAMPTZ)"]
            if hi is not None:
                cond.append(f"created >= CAST('{iso_utc(hi)}' AS TIMESTAMPTZ)")
            if source is not None:
                cond.append("source = ?")
            else:
                named = list(ladders.by_source)
                if named:
                    cond.append(f"source NOT IN ({', '.join('?' * len(named))})")
            params = [source] if source is not None else list(ladders.by_source)
            sql = ("SELECT json_array(id, coalesce(bytes, 0), "
                   "coalesce(json_extract_string(labels, '$.keep'), '')) FROM records WHERE "
                   + " AND ".join(cond) + " ORDER BY created DESC, id DESC")  # fmt: skip

            def rows(con: Any, sql: str = sql, params: list[Any] = params) -> list[Any]:
                return list(iter_json(con, sql, params or None))

            total = 0
            for rid, nbytes, keep in with_retry(store, rows):
                if str(keep).lower() in ("1", "true", "yes"):
                    continue
                total += int(nbytes)
                if total > step.cap:
                    out[str(rid)] = i + 1
    return out


def run_pass(
    store: Store,
    ladders: Ladders,
    *,
    now_ns: int | None = None,
    dry_run: bool = False,
    budget_s: float | None = None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    seen: dict[str, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Any = None,
) -> TierReport:
    """One tier pass over a run (the maintenance thread's and ``imagelog tier``'s).

    Args:
        now_ns: judge ages as if it were this time (``--as-of``); default now.
        dry_run: count what would be done, change nothing.
        budget_s: stop after about this much CPU time (``report.done`` is False then).
        keep: ``open(keep=)``: frames it keeps are exempt, as are frames labelled ``keep``.
        seen: hour -> when it was last settled; updated, so the next pass skips hours no frame of
            which crossed a step since (a writer's maintenance keeps it between passes).
        stop: an event; once set, the pass ends after the frame in hand (``done`` False).

    One pass at a time per run: a pass holds ``tiers.lock`` (a lease, ``LEASE_S``); while
    another live pass holds it, this one does nothing and says so (``report.busy``).
    """
    if dry_run or not ladders:
        return _run_pass(store, ladders, now_ns=now_ns, dry_run=dry_run, budget_s=budget_s,
                         keep=keep, seen=seen, progress=progress, stop=stop)  # fmt: skip
    owner = TIER_WRITER_PREFIX + new_writer_id()
    if not _acquire(store, owner):
        now = time.time_ns() if now_ns is None else now_ns
        return TierReport(as_of=iso_utc(now), busy=True)
    try:
        return _run_pass(store, ladders, now_ns=now_ns, dry_run=dry_run, budget_s=budget_s,
                         keep=keep, seen=seen, progress=progress, stop=stop, owner=owner)  # fmt: skip
    finally:
        _release(store, owner)


def _run_pass(
    store: Store,
    ladders: Ladders,
    *,
    now_ns: int | None = None,
    dry_run: bool = False,
    budget_s: float | None = None,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    seen: dict[str, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Any = None,
    owner: str = "",
) -> TierReport:
    """The pass itself (``run_pass`` holds the lease)."""
    from .index.recover import repair
    from .records import iter_records, list_files
    from .run import Run

    now = time.time_ns() if now_ns is None else now_ns
    report = TierReport(as_of=iso_utc(now), dry_run=dry_run)
    if not ladders:
        return report
    cpu0 = time.thread_time()
    if not dry_run and store.local_root is not None:  # object stores: parts are whole
        repair(store, tails_only=True)  # torn lines of a pass killed mid-append
    seen = {} if seen is None else seen
    promoted = _promoted(store, ladders, now) if any(
        s.cap is not None for lad in ladders.all() for s in lad
    ) else {}  # fmt: skip
    files = list_files(store)
    due = set(_hours_due(files.hours, ladders, now, seen))
    for rid in promoted:  # the hour of a promoted frame: its id's time is its log time
        from .ids import uuid7_time_ns

        due.add(hour_of(uuid7_time_ns(rid)))
    hours = sorted(h for h in due if h in set(files.hours))
    run = Run(store)
    events = None if dry_run else _Events(store, owner)
    # one read of the due hours (the engine's tombstones and tier events are read once)
    groups = _by_hour(iter_records(store, hours=hours))
    leased = time.time()
    try:
        ahead = next(groups, None)
        for n, hour in enumerate(hours):
            if progress is not None:
                progress(n, len(hours))
            recs: list[dict[str, Any]] = []
            if ahead is not None and ahead[0] == hour:
                recs, ahead = ahead[1], next(groups, None)
            failed = report.failed
            finished = _pass_hour(run, store, hour, recs, ladders, now, promoted, keep, events,
                                  report, budget_s, cpu0, stop)  # fmt: skip
            report.hours += 1
            if owner and time.time() - leased > LEASE_S / 2:
                _renew(store, owner)
                leased = time.time()
            if not finished:
                report.done = False
                break
            if not dry_run and report.failed == failed:  # else: tried again next pass
                seen[hour] = now
        if progress is not None:
            progress(len(hours), len(hours))
    finally:
        groups.close()
        if events is not None:
            events.close()
        report.cpu_s = time.thread_time() - cpu0
    return report


def _lease(owner: str) -> bytes:
    from .record import HOSTNAME

    data = {"owner": owner, "host": HOSTNAME, "pid": os.getpid(), "expires": time.time() + LEASE_S}
    return (dumps(data) + "\n").encode("utf-8")


def _holder(store: Store) -> dict[str, Any] | None:
    """The live lease on the run, or None (absent, unreadable, expired, or its process gone)."""
    import json

    from .index.recover import pid_alive
    from .record import HOSTNAME

    try:
        cur = json.loads(store.get(LOCK_KEY))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(cur, dict) or float(cur.get("expires") or 0) < time.time():
        return None
    pid = cur.get("pid")
    if cur.get("host") == HOSTNAME and isinstance(pid, int) and not pid_alive(pid):
        return None
    return cur


def _acquire(store: Store, owner: str) -> bool:
    """Take the run's lease; False if another live pass holds it."""
    held = _holder(store)
    if held is not None and held.get("owner") != owner:
        return False
    root = store.local_root
    if root is not None:  # a local folder: create it exclusively, replacing a stale one
        path = root / LOCK_KEY
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if _holder(store) is not None:
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "wb") as fh:
                fh.write(_lease(owner))
            return True
        return False
    store.put(LOCK_KEY, _lease(owner))
    time.sleep(LEASE_SETTLE_S)
    held = _holder(store)
    return held is not None and held.get("owner") == owner


def _renew(store: Store, owner: str) -> None:
    held = _holder(store)
    if held is not None and held.get("owner") == owner:
        store.put(LOCK_KEY, _lease(owner))


def _release(store: Store, owner: str) -> None:
    try:
        held = _holder(store)
        if held is not None and held.get("owner") == owner:
            store.delete([LOCK_KEY])
    except OSError:
        pass  # it expires


def _by_hour(
    records: Iterator[dict[str, Any]],
) -> Generator[tuple[str, list[dict[str, Any]]], None, None]:
    """Records (oldest first, an index hour at a time) grouped by hour of log time, which is
    the index hour a ``logged`` line is in."""
    hour, group = "", list[dict[str, Any]]()
    try:
        for rec in records:
            h = hour_of(_created_ns(rec))
            if h != hour and group:
                yield hour, group
                group = []
            hour = h
            group.append(rec)
        if group:
            yield hour, group
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()


def _over(budget_s: float | None, cpu0: float) -> bool:
    return budget_s is not None and time.thread_time() - cpu0 >= budget_s


def _pass_hour(
    run: Any,
    store: Store,
    hour: str,
    recs: list[dict[str, Any]],
    ladders: Ladders,
    now: int,
    promoted: Mapping[str, int],
    keep: Callable[[Mapping[str, Any]], bool] | None,
    events: _Events | None,
    report: TierReport,
    budget_s: float | None,
    cpu0: float,
    stop: Any = None,
) -> bool:
    """One hour; False if the budget ran out first."""
    dry = events is None
    before = report.bytes_before
    deletes: list[dict[str, Any]] = []
    thin_groups: dict[tuple[int, str, int], list[dict[str, Any]]] = {}
    thin_step: dict[tuple[int, str, int], tuple[int, Tier]] = {}
    encodes: list[tuple[dict[str, Any], int, Tier, Ladder]] = []
    kept_buckets: set[tuple[int, str, int]] = set()
    for rec in recs:
        image = rec.get("image") or {}
        source = str(image.get("source", ""))
        ladder = ladders.of(source)
        if not ladder or not (rec.get("file") or {}).get("path"):
            continue
        report.frames += 1
        report.bytes_before += int((rec.get("file") or {}).get("size") or 0)
        age = (now - _created_ns(rec)) / 1e9
        reached = [i for i, s in enumerate(ladder) if s.after_s <= age]
        if _keep(rec, keep):
            report.exempt += 1
            thins = [i for i in reached if ladder[i].kind == "thin"]
            if thins:  # the frame its interval keeps: the others of the interval go
                interval = ladder[thins[-1]].thin_s or 1.0
                bucket = int(_created_ns(rec) // int(interval * 1e9))
                kept_buckets.add((id(ladder), source, bucket))
            continue
        rid = str(image.get("id", ""))
        if rid in promoted:
            reached = list(range(min(promoted[rid], len(ladder)) + 1))
            if promoted[rid] >= len(ladder):  # past the last step: deleted
                deletes.append(rec)
                continue
        if not reached:
            continue
        if ladder[reached[-1]].delete:
            deletes.append(rec)
            continue
        thins = [i for i in reached if ladder[i].kind == "thin"]
        if thins:
            i = thins[-1]
            interval = ladder[i].thin_s or 1.0
            bucket = int(_created_ns(rec) // int(interval * 1e9))
            gkey = (id(ladder), source, bucket)
            thin_groups.setdefault(gkey, []).append(rec)
            thin_step[gkey] = (i, ladder[i])
        files_steps = [i for i in reached if ladder[i].kind in ("format", "thumbnail")]
        if files_steps:
            i = files_steps[-1]
            if ladder[i].after_s > _current_after(rec):
                encodes.append((rec, i, ladder[i], ladder))
    # 1. delete
    if deletes:
        ids = [str(r["image"]["id"]) for r in deletes]
        nbytes = sum(int(r["file"].get("size") or 0) for r in deletes)
        report.deleted += len(ids)
        report.bytes_after -= nbytes
        if not dry:
            assert events is not None
            ev = purged_record(now_ns=now, rid=uuid7(now), reason="tier", writer=events.writer,
                               hour=hour, whole=False, files=len(ids), nbytes=nbytes,
                               records=len(ids), kept=0, ids=ids,
                               message=f"tier: deleted {len(ids)} frame(s) of hour {hour}")  # fmt: skip
            events.append(hour, [ev])
            store.delete(_files_of(deletes))
    gone = {str(r["image"]["id"]) for r in deletes}
    # 2. thin
    removed: list[tuple[dict[str, Any], int, Tier]] = []
    for gkey, group in thin_groups.items():
        group = [r for r in group if str(r["image"]["id"]) not in gone]
        group.sort(key=lambda r: (not _triggered(r), str(r["image"]["id"])))
        i, step = thin_step[gkey]
        removed += [(r, i, step) for r in group[0 if gkey in kept_buckets else 1 :]]
    if removed:
        by_writer: dict[tuple[str, int], list[tuple[dict[str, Any], int, Tier]]] = {}
        for item in removed:
            w = str((item[0].get("imagelog") or {}).get("writer", ""))
            by_writer.setdefault((w, item[1]), []).append(item)
        evs = []
        for (w, i), items in sorted(by_writer.items()):
            rs = [r for r, _, _ in items]
            step = items[0][2]
            report.thinned += len(rs)
            report.bytes_after -= sum(int(r["file"].get("size") or 0) for r in rs)
            report.count(i + 1, step, len(rs))
            times = [_created_ns(r) for r in rs]
            by_source: dict[str, int] = {}
            for r in rs:
                src = str(r["image"].get("source", ""))
                by_source[src] = by_source.get(src, 0) + 1
            if not dry:
                assert events is not None
                evs.append(thinned_record(
                    now_ns=now, rid=uuid7(now), writer=events.writer, step=i + 1,
                    after=step.label, interval=step.thin_s or 0.0, frames_writer=w,
                    ids=[str(r["image"]["id"]) for r in rs],
                    nbytes=sum(int(r["file"].get("size") or 0) for r in rs),
                    first_ns=min(times), last_ns=max(times),
                    seqs=_seq_ranges(int(r["image"].get("seq", 0)) for r in rs),
                    by_source=by_source,
                ))  # fmt: skip
        if not dry:
            assert events is not None
            events.append(hour, evs)  # the tombstones first: a crash leaves files, not lines
            store.delete(_files_of([r for r, _, _ in removed]))
        gone |= {str(r["image"]["id"]) for r, _, _ in removed}
    # 3. re-encode / thumbnail, in batches: files, then lines, then the old files
    finished = True
    moved: set[str] = set()  # the new files of this pass
    batch: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for rec, i, step, ladder in encodes:
        if str(rec["image"]["id"]) in gone:
            continue
        if _over(budget_s, cpu0) or (stop is not None and stop.is_set()):
            finished = False
            break
        if dry:
            report.tiered += 1
            report.count(i + 1, step)
            continue
        assert events is not None
        spec = (
            step.format if step.kind == "format" and step.format else _thumbnail_format(ladder, i)
        )
        eid = uuid7(now)
        try:
            key, data, file, image, sidecar = _reencode(run, rec, spec, step.thumbnail, i + 1,
                                                        step.label, eid)  # fmt: skip
        except Exception as exc:
            report.failed += 1
            report.errors.append(f"{rec['file'].get('path')}: {type(exc).__name__}: {exc}")
            continue
        if sidecar is not None:
            store.put(key + ".json", sidecar.encode("utf-8"))
        store.put(key, data)
        file = stored_file(file, key, data, sha256=True)
        ev = tiered_record(rec, now_ns=now, rid=eid, writer=events.writer, kind=step.kind,
                           step=i + 1, after=step.label, file=file, image=image)  # fmt: skip
        if sidecar is not None:
            ev["imagelog"]["tiered"]["sidecar"] = key + ".json"
        batch.append((rec, ev))
        moved.update((key, key + ".json") if sidecar is not None else (key,))
        report.bytes_after += len(data) - int(rec["file"].get("size") or 0)
        report.tiered += 1
        report.count(i + 1, step)
        if len(batch) >= BATCH:
            _commit(store, events, hour, batch)
            batch = []
    if batch:
        assert events is not None
        _commit(store, events, hour, batch)
    if not dry and finished:
        current = {p for r in recs if str(r["image"]["id"]) not in gone for p in _files_of([r])}
        current |= moved
        report.cleaned += _clean(store, hour, current)
        remaining = [r for r in recs if str((r.get("image") or {}).get("id")) not in gone]
        if not remaining and _hour_gone(ladders, hour, now):
            report.cleaned += _drop_hour(store, hour, now, events)
    report.bytes_after += report.bytes_before - before
    return finished


def _hour_gone(ladders: Ladders, hour: str, now: int) -> bool:
    """Whether every ladder ends in a delete step that the whole hour has reached."""
    lads = ladders.all()
    if not lads or not all(lad[-1].delete for lad in lads):
        return False
    return hour_end_ns(hour) + max(int(lad[-1].after_s * 1e9) for lad in lads) <= now


def _drop_hour(store: Store, hour: str, now: int, events: _Events | None) -> int:
    """Remove an hour that no frame is left in: its index files (the tier passes' last, since
    they hold the tombstones), then whatever files are left; a ``purged`` event (whole) goes
    into the current hour. A kill in between leaves tombstoned lines, never a dangling one."""
    from .layout import hour_of_key, writer_of
    from .records import list_files

    files = list_files(store)
    jsonl, parquet = files.keys([hour])
    keys = jsonl + parquet
    if not keys:
        return 0
    tier = [k for k in keys if writer_of(k).startswith(TIER_WRITER_PREFIX)]
    summaries = [k for k in files.summaries if hour_of_key(k) == hour]  # counts of what goes
    store.delete([*summaries, *(k for k in keys if k not in tier)])
    store.delete(tier)
    left = [o.key for o in store.list(images_prefix(hour))]
    store.delete(left)
    store.remove_temp(images_prefix(hour))
    if events is not None:
        ev = purged_record(now_ns=now, rid=uuid7(now), reason="tier", writer=events.writer,
                           hour=hour, whole=True, files=len(left), nbytes=0, records=0, kept=0,
                           ids=[],
                           message=f"tier: hour {hour} has no frame left; its index is removed")  # fmt: skip
        events.append(hour_of(now), [ev])
    return len(left)


def _files_of(recs: Iterable[Mapping[str, Any]]) -> list[str]:
    out = []
    for r in recs:
        path = (r.get("file") or {}).get("path")
        if path:
            out.append(str(path))
        side = (r.get("imagelog") or {}).get("sidecar")
        if side:
            out.append(str(side))
    return out


def _commit(
    store: Store, events: _Events, hour: str, batch: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    events.append(hour, [ev for _, ev in batch])
    old = [k for rec, ev in batch for k in _files_of([rec])
           if k != ev["imagelog"]["tiered"]["file"]["path"]]  # fmt: skip
    store.delete(old)


def _clean(store: Store, hour: str, current: set[str]) -> int:
    """Remove what a killed pass left in an hour: files the index names (as a logged record's,
    a tiered event's new or old file) that no current record points at, and tier files
    (``.t<N>.``) no event names. Other unindexed files are left for ``reindex``. The index is
    read again only when the hour holds a file no current record names."""
    listing = [o.key for o in store.list(images_prefix(hour))]
    unknown = [k for k in listing if k not in current]
    if not unknown:
        return 0
    known: set[str] = set()
    for rec in _raw_hour(store, hour):
        action = (rec.get("event") or {}).get("action")
        if action == "logged":
            known.update(_files_of([rec]))
        elif action == "tiered":
            t = (rec.get("imagelog") or {}).get("tiered") or {}
            for k in ((t.get("file") or {}).get("path"), (t.get("from") or {}).get("path"),
                      t.get("sidecar")):  # fmt: skip
                if k:
                    known.add(str(k))
    known -= current
    stale = []
    for key in unknown:
        image = key[:-5] if key.endswith(".json") else key
        tiered_name = bool(_TIER_SUFFIX.search(image.rpartition(".")[0]))
        if key in known or image in known or tiered_name:
            stale.append(key)
    store.delete(stale)
    return len(stale)


def _raw_hour(store: Store, hour: str) -> list[dict[str, Any]]:
    """The ``logged`` and ``tiered`` lines of an index hour as written (no purge or tier rule)."""
    import duckdb

    from .records import LocalFiles, iter_json, list_files, records_sql

    jsonl, parquet = list_files(store).keys([hour])
    with LocalFiles(store, pin=True) as local:  # the files stay while the connection reads
        con = duckdb.connect(config={"autoinstall_known_extensions": False})
        try:
            rows = records_sql([local.path(k) for k in jsonl], [local.path(k) for k in parquet])
            sql = (f"SELECT CAST(record AS VARCHAR) FROM ({rows}) "
                   "WHERE action IN ('logged', 'tiered')")  # fmt: skip
            return [r for r in iter_json(con, sql) if isinstance(r, dict)]
        finally:
            con.close()


class TierWorker:
    """A writer's tier passes (``open(tiers=...)``), in the ``imagelog-tiers`` thread that the
    maintenance thread starts and stops: niced (``TIER_NICE``), at most ``budget_s`` CPU seconds
    per pass and ``share`` of one core while work is left, one pass per ``idle_s`` once none is.
    Errors go to ``report`` and never stop the writer."""

    def __init__(
        self,
        store: Store,
        ladders: Ladders,
        *,
        keep: Callable[[Mapping[str, Any]], bool] | None,
        report: Callable[[str, BaseException], None],
        clock: Callable[[], int] = time.time_ns,
        budget_s: float = PASS_BUDGET_S,
        share: float = CPU_SHARE,
        idle_s: float = IDLE_WAIT_S,
    ) -> None:
        import threading

        self.store = store
        self.ladders = ladders
        self.keep = keep
        self.report = report
        self.clock = clock
        self.budget_s = budget_s
        self.share = share
        self.idle_s = idle_s
        self.passes = 0
        self.last: TierReport | None = None
        self._seen: dict[str, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        import threading

        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="imagelog-tiers", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run a pass now."""
        self._wake.set()

    def stop(self, timeout: float | None) -> None:
        """Stop after the frame in hand (a pass stops between frames) and join."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        from ._pipeline import _lower_priority

        _lower_priority(TIER_NICE)
        try:
            save_ladders(self.store, self.ladders)
        except Exception as exc:
            self.report("tiers", exc)
        while not self._stop.is_set():
            wait = self.idle_s
            try:
                rep = run_pass(self.store, self.ladders, now_ns=self.clock(), keep=self.keep,
                               budget_s=self.budget_s, seen=self._seen, stop=self._stop)  # fmt: skip
                self.passes += 1
                self.last = rep
                for err in rep.errors[:3]:
                    self.report("tiers", RuntimeError(err))
                if not rep.done:  # work left: rest so the pass uses ``share`` of a core
                    wait = max(0.01, rep.cpu_s * (1 - self.share) / self.share)
            except Exception as exc:
                self.report("tiers", exc)
            self._wake.wait(wait)
            self._wake.clear()

"""The background half: encoder/writer threads that turn queued frames into files and index lines."""

from __future__ import annotations

import collections
import dataclasses
import errno
import json
import logging
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from . import exif, pixfmt
from ._backoff import Backoff
from ._free_space import FreeSpaceGuard
from ._maintenance import Maintenance
from ._queue import ByteQueue, Item
from ._report import RateLimitedReporter
from ._ring import Expiry, Ring, Trigger
from ._ring_dir import RingDir
from ._shards import ShardWriter
from ._verify import Sampler, Verifier
from .checks import check_frame
from .codecs import get as get_codec
from .codecs.base import Codec
from .codecs.passthrough import encoded_lossless, extension_of
from .errors import CodecError, QueueClosed, SpoolFull
from .frames import BufferPool, Frame
from .ids import uuid7
from .index import IndexWriter
from .index.segment import SYNC_EVERY
from .layout import image_key
from .record import (
    dropped_record,
    dumps,
    encoding_record,
    expired_record,
    failed_record,
    iso_utc,
    mark_triggered,
    ordered,
    stored_file,
    triggered_record,
)
from .retention import Retention
from .settings import Fsync, OnFull, Settings
from .stores.base import Store

__all__ = ["EventJob", "FrameJob", "Pipeline"]

logger = logging.getLogger("imagelog")

#: Records (drops, failures) held in memory while the index cannot be written (a full disk);
#: beyond this many, further ones are only counted (``stats()["unrecorded"]``).
MAX_HELD_RECORDS = 10_000

_STORAGE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.EIO,
}


@dataclasses.dataclass(slots=True)
class FrameJob:
    """A frame to encode and write, with the caller-thread half of its record."""

    frame: Frame
    record: dict[str, Any]
    codec: Codec
    params: dict[str, Any]
    created_ns: int
    source: str
    captured_given: bool = False
    captured_ns: int = 0
    #: with a ring: the encoded bytes (no record inside), once the frame was held
    encoded: bytes | None = None
    #: the trigger that saves it (its window covers the frame's capture time)
    trigger: Trigger | None = None
    #: bytes the ring still counts for it (taken out of the ring by a trigger, not yet written)
    ring_nbytes: int = 0
    #: its file in ``ring_dir`` while held (removed once expired or written)
    ring_path: str | None = None
    #: the writer that logged it, when not this one (adopted from a dead writer's ring_dir)
    writer: str | None = None


@dataclasses.dataclass(slots=True)
class EventJob:
    """An index line with no image (a drop, a purge)."""

    record: dict[str, Any]
    created_ns: int


class Stats:
    """Counters shared by the caller and the background threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.by_source: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.dropped_by_reason: Counter[str] = Counter()
        self.failed_by_reason: Counter[str] = Counter()
        self.warnings_by_kind: Counter[str] = Counter()
        self.last_error: str | None = None
        self.first_error: BaseException | None = None
        #: drop/failure records waiting for a writable index, oldest first
        self.held: collections.deque[tuple[dict[str, Any], int]] = collections.deque()
        self.unrecorded = 0

    def add(self, source: str, key: str, n: int = 1) -> None:
        """Count ``n`` of ``key`` for ``source`` and in total."""
        with self.lock:
            self.counts[key] += n
            self.by_source[source][key] += n


class Pipeline:
    """The queue, the worker threads and the index writer of one writer (one process)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        writer: str,
        *,
        clock: Callable[[], int] = time.time_ns,
        repair: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.writer = writer
        self.clock = clock
        self.ring: Ring | None = None
        if settings.ring_bytes is not None:
            r = settings.ring
            per_source = (
                None if not isinstance(r, Mapping) else {k: int(v * 1e9) for k, v in r.items()}
            )
            duration = None if r is None or isinstance(r, Mapping) else int(r * 1e9)
            self.ring = Ring(duration, settings.ring_bytes, per_source=per_source)
        # the ring's bytes are part of max_queue_bytes: the queue keeps the rest
        self.queue = ByteQueue(settings.max_queue_bytes - (settings.ring_bytes or 0))
        self.stats = Stats()
        self.stats.counts["logged"] = 0
        syncing = settings.fsync is not Fsync.NONE
        self.index = IndexWriter(store, writer, sync=syncing)
        self.shards = (
            None
            if not settings.shard_under
            else ShardWriter(
                store, writer, append_line=self.index.append_line,
                max_bytes=settings.shard_bytes, max_age=settings.shard_age,
                sync=settings.fsync is Fsync.ALL, report=self.report,
            )
        )  # fmt: skip
        self._threads: list[threading.Thread] = []
        self._idents: frozenset[int | None] = frozenset()
        self._start_lock = threading.Lock()
        self._reporter = RateLimitedReporter()
        self.workers = settings.workers or store.concurrency
        self.on_written: list[Callable[[dict[str, Any]], None]] = []
        # recycled frame buffers count against max_queue_bytes together with the queued frames
        self.pool = BufferPool(min(self.queue.max_bytes, 64 * 2**20))
        self.opened_wall_ns = time.time_ns()
        self._seen_triggers: set[str] = set()
        self._stopping = False
        self.ring_dir = (
            None
            if settings.ring_dir is None or self.ring is None
            else RingDir(settings.ring_dir, writer)
        )
        self.adopted = 0
        self.verifier = Verifier(settings.verify)
        self.checker = Sampler(settings.check_encoding)
        self.backoff = Backoff()
        self._pause_error: OSError | None = None
        self._fields: dict[tuple[str, int], tuple[dict[str, Any], dict[str, Any]]] = {}
        self.retention = Retention(
            store, max_bytes=settings.max_bytes, max_age=settings.max_age,
            min_free_bytes=settings.min_free_bytes, keep=settings.keep, index=self.index,
            clock=clock, report=self.report, pending=self.oldest_pending,
        )  # fmt: skip
        if self.retention.enabled:
            self.on_written.append(self._count_for_retention)
        self.guard = (
            None
            if settings.min_free_bytes is None
            else FreeSpaceGuard(store, settings.min_free_bytes)
        )
        self.maintenance = Maintenance(
            retention=self.retention, index=self.index if syncing else None,
            sync_every=SYNC_EVERY, writer=writer, repair=repair, report=self.report,
            poll=None if self.ring is None else self.poll_triggers,
        )  # fmt: skip
        if self.ring_dir is not None:
            self._adopt()

    def _count_for_retention(self, rec: dict[str, Any]) -> None:
        """An ``on_written`` hook: count the record; over quota, ask for a retention pass."""
        if self.retention.add(rec):
            self.maintenance.wake()

    def oldest_pending(self) -> int | None:
        """The log time (ns) of the oldest frame queued or being written, or None."""
        item = self.queue.oldest()
        payload = None if item is None else item.payload
        return payload.created_ns if isinstance(payload, FrameJob | EventJob) else None

    # -- answers to the log ----------------------------------------------------------------------
    def flush(self, timeout: float | None) -> bool:
        """Wait until everything queued before the call is written (and, with retention on, a
        quota pass has run), then make the index visible and durable; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = self.queue.wait_done(self.queue.mark(), timeout)
        if ok and self.retention.enabled:  # and the quota kept (a background pass)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = self.maintenance.settle(left)
        if ok:
            if self.shards is not None and self.shards.local is None:
                self.shards.roll()  # object stores: put the open shards, then their lines
            self.write_summary(force=True)
            self.write_held()
            self.index.flush()  # object stores: upload the open index part
            if self.settings.fsync is not Fsync.NONE:
                self.index.sync()
        return ok

    def take_first_error(self) -> BaseException | None:
        """The first background error since the last call (strict mode re-raises it)."""
        with self.stats.lock:
            err, self.stats.first_error = self.stats.first_error, None
        return err

    def stats_dict(self) -> dict[str, Any]:
        """``ImageLog.stats()``: counters, queue figures, per-source counts, the store's own."""
        with self.stats.lock:
            c = self.stats.counts
            return {
                "logged": c["logged"],
                "written": c["written"],
                "dropped": c["dropped"],
                "failed": c["failed"],
                "verified": c["verified"],
                "verify_failed": c["verify_failed"],
                "bytes_written": c["bytes_written"],
                "queue_bytes": self.queue.bytes,
                "queue_frames": len(self.queue),
                "max_queue_bytes": self.queue.max_bytes,
                "peak_queue_bytes": self.queue.peak_bytes,
                "dropped_by_reason": dict(self.stats.dropped_by_reason),
                "failed_by_reason": dict(self.stats.failed_by_reason),
                "encoding_checked": c["encoding_checked"],
                "encoding_warnings": c["encoding_warnings"],
                "encoding_warnings_by_kind": dict(self.stats.warnings_by_kind),
                "last_error": self.stats.last_error,
                "held_records": len(self.stats.held),
                "unrecorded": self.stats.unrecorded,
                "paused": self.backoff.reason,
                **self._ring_stats(),
                "encode_seconds": c["encode_ns"] / 1e9,
                "write_seconds": c["write_ns"] / 1e9,
                "by_source": {
                    s: {
                        k: v[k]
                        for k in ("logged", "written", "dropped", "failed", "bytes_written")
                        + (("expired", "triggered") if self.ring is not None else ())
                    }
                    for s, v in self.stats.by_source.items()
                },
                "writer": self.writer,
                "workers": self.workers,
                "store": dict(self.store.stats()),
                "url": self.store.url,
            }

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker threads (idempotent; called by the first ``log()``)."""
        if self._threads:
            return
        with self._start_lock:
            if self._threads:
                return
            threads = [
                threading.Thread(target=self._run, name=f"imagelog-encoder-{i}", daemon=True)
                for i in range(self.workers)
            ]
            for t in threads:
                t.start()
            self._idents = frozenset(t.ident for t in threads)
            self._threads = threads
        self.maintenance.start()

    def start_maintenance(self) -> None:
        """Start the maintenance thread alone (on open: repair and retention need no frame)."""
        self.maintenance.start()

    @property
    def started(self) -> bool:
        """Whether the worker threads run."""
        return bool(self._threads)

    def is_worker_thread(self) -> bool:
        """Whether the current thread is one of ours (re-entrancy guard)."""
        return threading.get_ident() in self._idents

    def stop(self, timeout: float | None) -> int:
        """Drain for up to ``timeout`` seconds and stop the threads; return how many frames were
        left unwritten (each counted and indexed as dropped, reason ``close_timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._stopping = True
        self.queue.wait_done(self.queue.mark(), timeout)
        left = self.queue.drain()
        self.queue.close(len(self._threads))
        for t in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            t.join(remaining)
        self._threads = []
        self._idents = frozenset()
        remaining = None if deadline is None else max(0.1, deadline - time.monotonic())
        self.maintenance.stop(remaining)
        frames = 0
        events = []
        for item in left:
            if isinstance(item.payload, FrameJob):
                frames += 1
                events.append(self._drop_record(item.payload, "close_timeout"))
                if item.payload.ring_path is not None:  # recorded as dropped: not to be adopted
                    RingDir.remove(item.payload.ring_path)
            elif isinstance(item.payload, EventJob):
                events.append(item.payload)
        if self.ring is not None:  # what the ring still holds expires with the log
            for old in self.ring.expire_all():
                self.stats.add(old.source, "expired")
                if old.job.ring_path is not None:
                    RingDir.remove(old.job.ring_path)
            for w, summary in self.ring.take_summaries(force=True):
                events.append(self._summary_event(w, summary, "close"))
            if self.ring_dir is not None:
                self.ring_dir.close()
        for e in events:
            self.hold(e.record, e.created_ns)
        if self.shards is not None:
            self.shards.close()
        try:
            self.write_held()
            self.index.close()
        except OSError as exc:
            self.report("index-close", exc)
        with self.stats.lock:  # what the index could not take by now is lost from its books
            self.stats.unrecorded += len(self.stats.held)
            self.stats.held.clear()
        return frames

    # -- caller-thread side -----------------------------------------------------------------------
    def make_room(self, nbytes: int, policy: OnFull) -> bool:
        """Before a frame of ``nbytes`` is copied: under ``drop_oldest`` drop the oldest queued
        frames it would not fit beside (their buffers go back to the pool, for this copy);
        False under ``drop_newest`` when it will not fit (drop it, uncopied)."""
        if policy is OnFull.DROP_OLDEST:
            for old in self.queue.evict(nbytes):
                self.record_drop(old.payload, "queue_full")
                self.recycle(old.payload)
                old.payload = None
            return True
        return policy is not OnFull.DROP_NEWEST or self.queue.fits(nbytes)

    def submit(
        self, job: FrameJob, policy: OnFull, timeout: float | None = None, *, drop: bool = False
    ) -> None:
        """Count a logged frame and queue it (``drop``: drop it at once, ``queue_full``); drops
        made to honour the bound become ``dropped`` records. Starts the workers on the first
        frame."""
        self.start()
        self.stats.add(job.source, "logged")
        if drop:
            if self.queue.closed:
                raise QueueClosed
            self.record_drop(job, "queue_full")
            return
        for old in self.queue.put(Item(job, job.frame.nbytes), policy, timeout):
            self.record_drop(old.payload, "queue_full")
            self.recycle(old.payload)
            old.payload = None

    def recycle(self, job: FrameJob) -> None:
        """Give a finished (or dropped) frame's buffer back to the pool."""
        frame = job.frame
        if frame.pooled and frame.pixels is not None:
            in_flight = max(0, self.queue.bytes - frame.pixels.nbytes)
            self.pool.give(frame.pixels, limit=self.queue.max_bytes - in_flight)
            frame.pixels = None

    def record_drop(self, job: FrameJob, reason: str) -> None:
        """Count a dropped frame and queue its ``dropped`` record (never blocks)."""
        try:
            self.queue.put_control(Item(self._drop_record(job, reason), 0))
        except QueueClosed:
            pass

    def _drop_record(self, job: FrameJob, reason: str) -> EventJob:
        self.stats.add(job.source, "dropped")
        with self.stats.lock:
            self.stats.dropped_by_reason[reason] += 1
        rec = dropped_record(job.record, reason, self._frame_fields(job.frame))
        return EventJob(rec, job.created_ns)

    # -- the ring -----------------------------------------------------------------------------------
    def trigger(
        self,
        *,
        tid: str,
        reason: str,
        at_ns: int,
        before_ns: int | None,
        after_ns: int,
        sources: frozenset[str] | None,
        origin: str = "api",
    ) -> int:
        """Open a trigger's window: queue the held frames it covers to be written (their bytes
        stay counted by the ring until written) and its ``triggered`` record; return how many
        held frames it took. Later frames in the window are written as they come."""
        assert self.ring is not None
        if self._stopping:
            return 0
        self.start()
        start = 0 if before_ns is None else at_ns - before_ns
        t = Trigger(tid, reason, at_ns, start, at_ns + after_ns, sources)
        jobs = self.ring.trigger(t)
        now = self.clock()
        rec = triggered_record(
            now_ns=now, rid=tid, reason=reason, writer=self.writer, at_ns=at_ns, start_ns=start,
            end_ns=t.end_ns, sources=None if sources is None else sorted(sources), origin=origin,
            frames=len(jobs),
        )  # fmt: skip
        with self.stats.lock:
            self.stats.counts["triggers"] += 1
        try:
            self.queue.put_control(Item(EventJob(rec, now), 0))
            for job in jobs:
                job.trigger = t
                mark_triggered(job.record, tid, reason)
                self.queue.put_control(Item(job, 0))  # not droppable: the ring counts its bytes
        except QueueClosed:
            pass
        return len(jobs)

    def poll_triggers(self) -> None:
        """Apply the triggers left under ``triggers/`` by ``imagelog trigger`` (maintenance thread).

        Each writer applies each trigger once; one left before this writer opened (wall clock)
        is skipped: its ring held nothing then.
        """
        from .layout import TRIGGERS_PREFIX

        for info in self.store.list(TRIGGERS_PREFIX):
            tid = info.key.rsplit("/", 1)[-1].removesuffix(".json")
            if tid in self._seen_triggers or not info.key.endswith(".json"):
                continue
            self._seen_triggers.add(tid)
            try:
                spec = json.loads(self.store.get(info.key))
                at_ns, after_ns = int(spec["at_ns"]), int(spec.get("after_ns") or 0)
                before = spec.get("before_ns")
                sources = spec.get("sources")
                if int(spec.get("created_ns") or 0) < self.opened_wall_ns:
                    continue  # left before this writer opened: its ring held nothing then
                self.trigger(
                    tid=tid, reason=str(spec["reason"]), at_ns=at_ns,
                    before_ns=None if before is None else int(before), after_ns=after_ns,
                    sources=None if sources is None else frozenset(map(str, sources)),
                    origin="file",
                )  # fmt: skip
            except (ValueError, KeyError, TypeError) as exc:
                self.report("trigger-file", ValueError(f"{info.key}: {exc}"))

    def _ring_or_write(self, job: FrameJob) -> None:
        """With a ring: write a frame a trigger's window covers; encode and hold any other."""
        ring = self.ring
        assert ring is not None
        t = ring.covering(job.source, job.captured_ns)
        if t is None:
            frame = job.frame
            if frame.encoded is None:
                assert frame.pixels is not None
                t0 = time.perf_counter_ns()
                pixels = frame.pixels
                if frame.pixel_format is not None:  # as _write_frame stores them
                    pixels, layout = pixfmt.to_stored(pixels, frame.pixel_format)
                    if layout is not None:
                        job.record["image"]["layout"] = layout
                job.encoded = job.codec.encode(pixels, job.params)
                with self.stats.lock:
                    self.stats.counts["encode_ns"] += time.perf_counter_ns() - t0
                self.recycle(job)
                frame.pixels = None  # the ring holds the encoded bytes only
                nbytes = len(job.encoded)
            else:
                nbytes = len(frame.encoded)
            seq = job.record["image"]["seq"]
            if self.ring_dir is not None:
                job.ring_path = self.ring_dir.save(
                    seq, self._ring_header(job), job.encoded or frame.encoded or b""
                )
            t = self._push(job, nbytes)
            if t is None:
                return
            if job.ring_path is not None:
                RingDir.remove(job.ring_path)
                job.ring_path = None
        job.trigger = t
        mark_triggered(job.record, t.id, t.reason)
        self._write_guarded(job)

    def _push(self, job: FrameJob, nbytes: int) -> Trigger | None:
        """Hold a frame in the ring; count (and remove the files of) the frames it pushes out."""
        assert self.ring is not None
        seq = job.record["image"]["seq"]
        writer = job.writer or self.writer
        t, expired = self.ring.push(job, writer, job.source, job.captured_ns, seq, nbytes)
        for old in expired:
            self.stats.add(old.source, "expired")
            if old.job.ring_path is not None:
                RingDir.remove(old.job.ring_path)
            old.job = None  # its bytes are gone with it
        if expired:
            self.write_summary()
        return t

    @staticmethod
    def _ring_header(job: FrameJob) -> dict[str, Any]:
        f = job.frame
        return {
            "record": job.record,
            "codec": job.codec.name,
            "params": job.params,
            "created_ns": job.created_ns,
            "captured_ns": job.captured_ns,
            "captured_given": job.captured_given,
            "source": job.source,
            "frame": {
                "width": f.width, "height": f.height, "channels": f.channels, "dtype": f.dtype,
                "channel_order": f.channel_order, "converted_from": f.converted_from,
                "encoded_format": f.encoded_format if f.encoded is not None else None,
                "pixel_format": f.pixel_format, "stride": f.stride, "bit_depth": f.bit_depth,
            },
        }  # fmt: skip

    def _adopt(self) -> None:
        """On open: take the held frames that dead writers left in ``ring_dir`` into the ring
        (a trigger can still save them; the bounds expire the rest, in their writer's books)."""
        from ._lifecycle import open_writers
        from .index.recover import writer_alive

        assert self.ring_dir is not None
        own = open_writers()
        for header, data, path, mtime in self.ring_dir.adopt(lambda w: writer_alive(w, own)):
            try:
                fr = header["frame"]
                passthrough = fr["encoded_format"] is not None
                frame = Frame(
                    fr["width"], fr["height"], fr["channels"], fr["dtype"],
                    encoded=data if passthrough else None, encoded_format=fr["encoded_format"],
                    channel_order=fr["channel_order"], converted_from=fr["converted_from"],
                    pixel_format=fr.get("pixel_format"), stride=fr.get("stride"),
                    bit_depth=fr.get("bit_depth"),
                )  # fmt: skip
                rec = header["record"]
                job = FrameJob(
                    frame, rec, get_codec(header["codec"]), header["params"],
                    int(header["created_ns"]), header["source"], bool(header["captured_given"]),
                    int(header["captured_ns"]), encoded=None if passthrough else data,
                    ring_path=path, writer=rec["imagelog"]["writer"],
                )  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                self.report("ring-dir", ValueError(f"{path}: {exc}"))
                continue
            self.adopted += 1
            self.opened_wall_ns = min(self.opened_wall_ns, mtime)  # its triggers still count
            t = self._push(job, len(data))
            if t is not None:  # cannot happen at open (no trigger yet), kept for clarity
                self.queue.put_control(Item(job, 0))

    def write_summary(self, *, force: bool = False) -> None:
        """Write the ``expired`` summary of the frames that left the ring, when a ring's worth
        has (or, with ``force``, any has)."""
        if self.ring is None:
            return
        for w, summary in self.ring.take_summaries(force=force):
            e = self._summary_event(w, summary, "ring")
            self.append_event(e.record, e.created_ns)

    def _summary_event(self, writer: str, e: Expiry, reason: str) -> EventJob:
        now = self.clock()
        rec = expired_record(
            now_ns=now, rid=uuid7(now), reason=reason, writer=writer, frames=e.frames,
            nbytes=e.bytes, first_ns=e.first_ns, last_ns=e.last_ns, seqs=e.seq_ranges(),
            by_source=e.by_source,
        )  # fmt: skip
        return EventJob(rec, now)

    def append_event(self, record: dict[str, Any], created_ns: int) -> None:
        """Append an event line now, or hold it (behind held ones, or while paused)."""
        if self.stats.held or self.backoff.reason is not None:
            self.hold(record, created_ns)
            return
        try:
            self.index.append(record, created_ns)
        except OSError as err:
            self.report(_reason(err), err)
            self.hold(record, created_ns)

    def _ring_stats(self) -> dict[str, Any]:
        c = self.stats.counts
        if self.ring is None:
            return {}
        return {
            "expired": c["expired"],
            "triggered": c["triggered"],
            "triggers": c["triggers"],
            "ring_frames": self.ring.frames,
            "adopted": self.adopted,
            "ring_bytes": self.ring.bytes,
            "max_ring_bytes": self.ring.max_bytes,
            "peak_ring_bytes": self.ring.peak_bytes,
        }

    # -- background side --------------------------------------------------------------------------
    def _run(self) -> None:
        _lower_priority(self.settings.worker_nice)
        while True:
            try:
                item = self.queue.get()
            except QueueClosed:
                return
            if item is None:
                continue
            try:
                payload = item.payload
                if isinstance(payload, FrameJob):
                    if (
                        self.ring is not None
                        and payload.trigger is None
                        and self.ring.holds(payload.source)
                    ):
                        self._ring_or_write(payload)
                    else:
                        self._write_guarded(payload)
                elif self.stats.held or self.backoff.reason is not None:
                    self.hold(payload.record, payload.created_ns)  # keep the index's order
                else:
                    self.index.append(payload.record, payload.created_ns)
            except SpoolFull as exc:  # the store is down and its spool is full: a counted drop
                if isinstance(item.payload, FrameJob):
                    self.record_drop(item.payload, "spool_full")
                else:
                    self.report("spool_full", exc)
                    self.hold(item.payload.record, item.payload.created_ns)
            except BaseException as exc:
                if isinstance(item.payload, FrameJob):
                    self._fail(item.payload, exc)
                else:  # an event line (a drop record) that could not be written: held for later
                    self.report(_reason(exc), exc)
                    self.hold(item.payload.record, item.payload.created_ns)
            finally:
                if isinstance(item.payload, FrameJob):
                    self.recycle(item.payload)
                    if item.payload.ring_nbytes and self.ring is not None:
                        self.ring.release(item.payload.ring_nbytes)
                        item.payload.ring_nbytes = 0
                    if item.payload.ring_path is not None and item.payload.trigger is not None:
                        # saved by a trigger and written (or failed): no longer held
                        RingDir.remove(item.payload.ring_path)
                        item.payload.ring_path = None
                self.queue.done(item)

    def _write_guarded(self, job: FrameJob) -> None:
        """Write a frame unless storage is paused (fail fast) or below ``min_free_bytes`` (drop)."""
        reason = self.backoff.blocked()
        if reason is not None:  # failed fast: its record waits for a writable index
            self._fail(job, self._pause_error or OSError(reason), reason=reason, quiet=True)
            return
        if self.guard is not None and not self.guard.ok():
            self.maintenance.wake()
            self.record_drop(job, "low_disk")
            self.report("low_disk", OSError(errno.ENOSPC, "free space below min_free_bytes"))
            return
        try:
            self._write_frame(job)
        except OSError as exc:
            if exc.errno in _STORAGE_ERRNOS:
                self._pause_error = exc
                if self.backoff.failed(_reason(exc)):
                    self.maintenance.wake()  # a full disk: let retention free what it may
            else:
                self.backoff.succeeded()
            raise
        if self.stats.held:
            self.write_held()
        if self.backoff.succeeded():
            try:
                logger.warning(
                    "imagelog: writing to %s resumed (%d frame(s) failed while paused)",
                    self.store.url, self.backoff.skipped,
                )  # fmt: skip
            except Exception:
                pass

    @staticmethod
    def _frame_fields(frame: Frame) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "width": frame.width,
            "height": frame.height,
            "channels": frame.channels,
            "dtype": frame.dtype,
            "channel_order": frame.channel_order,
        }
        if frame.converted_from:
            fields["converted_from"] = frame.converted_from
        if frame.pixel_format is not None:
            fields["pixel_format"] = frame.pixel_format
            fields["stride"] = frame.stride
            fields["bit_depth"] = frame.bit_depth
        return fields

    def _codec_fields(self, codec: Codec, params: dict[str, Any]) -> dict[str, Any]:
        """``image.format``, ``image.lossless`` and ``image.encoder`` of a codec and parameters,
        made once per pair (each record gets its own copy of the dict, sharing the values)."""
        key = (codec.name, id(params))
        hit = self._fields.get(key)
        if hit is None or hit[0] is not params:
            fields = {
                "format": codec.name,
                "lossless": codec.is_lossless(params),
                "encoder": {
                    "name": codec.library or codec.name,
                    "version": codec.version,
                    "params": params,
                },
            }
            hit = self._fields[key] = (params, fields)
        return hit[1]

    def _write_frame(self, job: FrameJob) -> None:
        frame, rec = job.frame, job.record
        image = rec["image"]
        image.update(self._frame_fields(frame))
        t0 = time.perf_counter()
        body: str | None = None  # the record as embedded, serialised once
        if frame.encoded is not None:
            fmt = frame.encoded_format or "jpeg"
            ext, mime = extension_of(fmt)
            lossless = encoded_lossless(frame.encoded, fmt)
            image.update(format=fmt, lossless=lossless, encoder={"name": "passthrough"})
            key = image_key(
                job.created_ns, job.source, image["seq"], job.writer or self.writer, ext
            )
            rec["file"] = {"path": key, "mime_type": mime, "extension": ext}
            tags = exif.read(frame.encoded, fmt)
            if tags:
                rec["exif"] = tags
                captured = exif.capture_time_ns(tags)
                if captured is not None and not job.captured_given:
                    rec["@timestamp"] = iso_utc(captured)
            data, embedded = frame.encoded, False
        else:
            codec = job.codec
            key = image_key(
                job.created_ns, job.source, image["seq"], job.writer or self.writer, codec.extension
            )
            image.update(self._codec_fields(codec, job.params))
            rec["file"] = {"path": key, "mime_type": codec.mime_type, "extension": codec.extension}
            if job.encoded is not None:  # held in the ring, encoded bare: the record goes in now
                pixels = None  # nothing to verify against: the pixels were let go when held
                body = dumps(ordered(rec))
                inside = codec.embed(job.encoded, body)
                if inside is None and _embeds_while_encoding(codec, job.params):
                    # TIFF puts the record in a tag as it encodes: lossless, so decode and
                    # encode again (the lossless preset's small frames, cheap)
                    decoded = codec.decode(job.encoded)
                    data, embedded = codec.encode_with_record(decoded, job.params, body)
                else:
                    data, embedded = (job.encoded, False) if inside is None else (inside, True)
            else:
                assert frame.pixels is not None
                pixels = frame.pixels
                if frame.pixel_format is not None:  # Bayer/YUV planes side by side: smaller files
                    pixels, layout = pixfmt.to_stored(pixels, frame.pixel_format)
                    if layout is not None:
                        image["layout"] = layout
                body = dumps(ordered(rec))
                data, embedded = codec.encode_with_record(pixels, job.params, body)
            if pixels is not None and self.verifier.due(
                codec, job.params
            ):  # verify=: decode, compare
                problem = self.verifier.check(codec, pixels, data)
                self.stats.add(job.source, "verified")
                if problem is not None:
                    self.stats.add(job.source, "verify_failed")
                    self.report(
                        "verify", CodecError(f"{codec.name} {job.params}: {key}: {problem}")
                    )
        t1 = time.perf_counter()
        sync = self.settings.fsync is Fsync.ALL
        unstored = rec["file"]
        if embedded and self.shards is not None and len(data) < self.settings.shard_under:
            # a member of the writer's shard: its line goes in once its bytes are (_shards.py)
            at = self.shards.add(job.created_ns, key.rsplit("/", 1)[1], data)
            rec["file"] = stored_file(unstored, at["path"], data, sha256=self.settings.hash,
                                      offset=at["offset"], member=at["member"])  # fmt: skip
            try:
                self.shards.commit(rec["file"], _line(body, unstored, rec), job.created_ns)
            except BaseException:  # no index line: take the member back too
                self.shards.undo(rec["file"])
                raise
        else:
            if not embedded:
                sidecar = key + ".json"
                self.store.put(sidecar, (body or dumps(ordered(rec))).encode("utf-8"), sync=sync)
                rec["imagelog"]["sidecar"] = sidecar
                body = None  # the index line names the sidecar: serialised again below
            self.store.put(key, data, sync=sync)
            rec["file"] = stored_file(unstored, key, data, sha256=self.settings.hash)
            try:
                self.index.append_line(_line(body, unstored, rec), job.created_ns)
            except (
                BaseException
            ):  # no index line: take the file away too, so a failed frame leaves nothing
                try:
                    self.store.delete([key, *([key + ".json"] if not embedded else [])])
                except Exception:
                    pass
                raise
        t2 = time.perf_counter()
        n = len(data)
        with self.stats.lock:
            counts, mine = self.stats.counts, self.stats.by_source[job.source]
            counts["written"] += 1
            counts["bytes_written"] += n
            mine["written"] += 1
            mine["bytes_written"] += n
            if job.trigger is not None:
                counts["triggered"] += 1
                mine["triggered"] += 1
            counts["encode_ns"] += int((t1 - t0) * 1e9)
            counts["write_ns"] += int((t2 - t1) * 1e9)
        final = ordered(rec)  # schema order for the hooks and encoding events (a dict copy)
        for hook in self.on_written:
            hook(final)
        if frame.pixels is not None and self.checker.due():
            self._check_encoding(job, final)

    def _check_encoding(self, job: FrameJob, final: dict[str, Any]) -> None:
        """``check_encoding=``: look for signs of a mis-declared frame; each finding is counted
        and written to the index as an ``encoding_warning`` event (never raises)."""
        frame = job.frame
        assert frame.pixels is not None
        try:
            findings = check_frame(frame.pixels, frame.pixel_format, bit_depth=frame.bit_depth)
        except Exception as exc:
            self.report("encoding-check", exc)
            return
        self.stats.add(job.source, "encoding_checked")
        for f in findings:
            now = self.clock()
            rec = encoding_record(
                final, now_ns=now, rid=uuid7(now), kind=f.kind, message=f.message, values=f.values
            )
            self.stats.add(job.source, "encoding_warnings")
            with self.stats.lock:
                self.stats.warnings_by_kind[f.kind] += 1
            try:  # the frame is written: a failed event line must not count it as failed
                self.index.append(rec, job.created_ns)  # the frame's hour: purged with it
            except Exception as exc:
                self.report("encoding-check", exc)
            self._reporter.warn(
                f"encoding-{f.kind}",
                f"{self.store.url}: {final['file']['path']}:",
                ValueError(f.message),
            )

    def _fail(
        self, job: FrameJob, exc: BaseException, *, reason: str | None = None, quiet: bool = False
    ) -> None:
        """Count a frame the write path could not store and write its ``failed`` record (held
        while the index cannot take it). ``quiet``: failed fast while paused (already reported)."""
        reason = reason or _reason(exc)
        self.stats.add(job.source, "failed")
        with self.stats.lock:
            self.stats.failed_by_reason[reason] += 1
            if not quiet:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if self.stats.first_error is None:
                    self.stats.first_error = exc
        if not quiet:
            self.report(reason, exc)
        rec = failed_record(job.record, reason, self._frame_fields(job.frame), exc)
        if self.stats.held or self.backoff.reason is not None:
            self.hold(rec, job.created_ns)
            return
        try:
            self.index.append(rec, job.created_ns)
        except OSError as err:
            self.report(_reason(err), err)
            self.hold(rec, job.created_ns)

    def hold(self, record: dict[str, Any], created_ns: int) -> None:
        """Keep a drop/failure record until the index can be written (``write_held``)."""
        with self.stats.lock:
            if len(self.stats.held) < MAX_HELD_RECORDS:
                self.stats.held.append((record, created_ns))
            else:
                self.stats.unrecorded += 1

    def write_held(self) -> None:
        """Append the held records to the index, oldest first; on failure they stay held."""
        with self.stats.lock:
            items = list(self.stats.held)
            self.stats.held.clear()
        if not items:
            return
        try:
            self.index.append_many(items)
        except OSError as exc:
            with self.stats.lock:
                self.stats.held.extendleft(reversed(items))
            self.report(_reason(exc), exc)

    def report(self, kind: str, exc: BaseException) -> None:
        """Warn through the ``imagelog`` logger, at most once per kind per minute."""
        self._reporter.warn(kind, f"background error in {self.store.url}:", exc)


def _line(body: str | None, unstored: dict[str, Any], rec: dict[str, Any]) -> str:
    """The index line of a stored frame: ``body`` (the record as embedded) with the stored
    ``file.*`` spliced in, or the record serialised when there is no body (a sidecar)."""
    if body is not None:
        return body.replace(f'"file":{dumps(unstored)}', f'"file":{dumps(rec["file"])}', 1)
    return dumps(ordered(rec))


def _embeds_while_encoding(codec: Codec, params: dict[str, Any]) -> bool:
    """Whether a codec with no ``embed`` puts the record in while encoding, losslessly."""
    own = type(codec).encode_with_record is not Codec.encode_with_record
    return own and codec.is_lossless(params)


def _lower_priority(nice: int) -> None:
    """Give this worker thread a lower CPU priority than the caller's threads (Linux: per thread).

    When the encoders saturate the cores, the scheduler then runs the caller's thread first, so
    ``log()`` keeps its latency and the encoders use what is left.
    """
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError:
        pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return {errno.ENOSPC: "disk_full", errno.EDQUOT: "disk_full", errno.EROFS: "read_only",
                errno.EACCES: "permission", errno.EPERM: "permission", errno.ENOENT: "missing",
                errno.EIO: "io_error"}[exc.errno]  # fmt: skip
    if isinstance(exc, OSError):
        return "storage"
    return "encode"

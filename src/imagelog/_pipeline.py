"""The background half: encoder/writer threads that turn queued frames into files and index lines."""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import exif, pixfmt
from ._backoff import STORAGE_ERRNOS, Backoff, storage_reason
from ._frame_bytes import Member, put_frame, put_members, to_shard
from ._free_space import FreeSpaceGuard
from ._jobs import EventJob, FrameJob, Stats
from ._maintenance import Maintenance
from ._priority import lower_priority
from ._queue import ByteQueue, Item
from ._report import RateLimitedReporter
from ._ring_dir import RingDir
from ._ring_keeper import RingKeeper, make_ring
from ._shards import ShardWriter
from ._verify import EncodingChecks, Verifier
from .codecs.base import Codec
from .codecs.passthrough import encoded_lossless, extension_of
from .errors import CodecError, QueueClosed, SpoolFull
from .frames import BufferPool
from .index import IndexWriter
from .index.segment import SYNC_EVERY
from .layout import image_key
from .record import (
    add_exif,
    codec_fields,
    dropped_record,
    dumps,
    failed_record,
    frame_fields,
    ordered,
    passthrough_fields,
    planned_file,
)
from .retention import Retention
from .settings import Fsync, OnFull, Settings
from .stores.base import Store
from .tiers import TierWorker

__all__ = ["Pipeline"]

logger = logging.getLogger("imagelog")

#: At most this many queued frames are taken per wake when shards are on: encoded one by one,
#: written with one ``writev()`` per shard and one index append (``_frame_bytes.put_members``).
BATCH_FRAMES = 32
#: Only frames of at most this many bytes (pixels) are taken together: larger ones keep both
#: encoders busy, one frame each.
BATCH_FRAME_BYTES = 256 * 1024

#: A batch's encoded shard members are written once they reach this many bytes (and at its
#: end): holding more cost more CPU per frame than the fewer writes saved (docs/design.md).
STAGED_BYTES = 128 * 1024

#: The queue item that has a worker append the drop records gathered since (``record_drop``).
_DROPS = object()

#: Records (drops, failures) held in memory while the index cannot be written (a full disk);
#: beyond this many, further ones are only counted (``stats()["unrecorded"]``).
MAX_HELD_RECORDS = 10_000


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
        ring = make_ring(settings)
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
                append_lines=self.index.append_lines,
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
        self.pool = BufferPool(
            min(self.queue.max_bytes, 64 * 2**20), room=self._room, spares=self.workers + 1
        )
        self.stopping = False
        self._drops: list[EventJob] = []  # drop records waiting for a worker (record_drop)
        self._drops_lock = threading.Lock()
        self._drops_queued = False
        self.verifier = Verifier(settings.verify)
        self.checker = EncodingChecks(
            settings.check_encoding, stats=self.stats, clock=clock, report=self.report,
            warn=self._reporter.warn, append=self.index.append, where=store.url,
        )  # fmt: skip
        self.backoff = Backoff()
        self._pause_error: OSError | None = None
        self._fields: dict[tuple[str, int], tuple[dict[str, Any], dict[str, Any]]] = {}
        #: with a ring: what happens to held frames (made last: it may adopt frames at once)
        self.ring: RingKeeper | None = None
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
            poll=None if ring is None else self._poll_triggers,
            tiers=None if settings.tiers is None else TierWorker(
                store, settings.tiers, keep=settings.keep, report=self.report, clock=clock,
                share=settings.tier_cpu),
        )  # fmt: skip
        if ring is not None:
            self.ring = RingKeeper(self, ring)

    def _room(self) -> int:
        """Bytes the memory bound leaves beside the queued frames and the pool's free buffers."""
        return self.queue.max_bytes - self.queue.bytes - self.pool.bytes

    def _poll_triggers(self) -> None:
        if self.ring is not None:
            self.ring.poll_triggers()

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
            if self.ring is not None:
                self.ring.write_summary(force=True)
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
                **({} if self.ring is None else self.ring.stats()),
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
        self.stopping = True
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
        self.pool.close(remaining)
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
        events += self._take_drops()
        if self.ring is not None:  # what the ring still holds expires with the log
            events += self.ring.close()
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
    def make_room(
        self,
        nbytes: int,
        policy: OnFull,
        buffer: tuple[tuple[int, ...], np.dtype[Any]] | None = None,
    ) -> str | None:
        """Before a frame of ``nbytes`` is copied: under ``drop_oldest`` drop the oldest queued
        frames it would not fit beside (their buffers go back to the pool, for this copy);
        under ``drop_newest`` the reason to drop this frame uncopied (``queue_full``), or None.

        ``buffer`` (the shape and dtype of a large frame's copy, ``PREPARED_MIN_BYTES``): under
        the drop policies such a frame is copied only into a buffer already touched. With none
        free while a frame waits in the queue, ``drop_oldest`` lets the oldest queued frame go
        for its buffer (if it has this shape) and ``drop_newest`` drops this one, each a drop
        with reason ``burst``; with none waiting it gets a fresh buffer. Either way the pool
        prepares more in the background, up to the memory bound.
        """
        if policy is OnFull.DROP_OLDEST:
            for old in self.queue.evict(nbytes):
                self._let_go(old)
        elif policy is OnFull.DROP_NEWEST and not self.queue.fits(nbytes):
            return "queue_full"
        if buffer is None:
            return None
        pool = self.pool
        pool.want(*buffer)
        if policy is OnFull.BLOCK or pool.ready(*buffer):
            return None
        pool.short()
        if policy is OnFull.DROP_NEWEST:
            return "burst" if self.queue.queued() else None

        def same(item: Item) -> bool:
            frame = item.payload.frame if isinstance(item.payload, FrameJob) else None
            px = None if frame is None or not frame.pooled else frame.pixels
            return px is not None and (px.shape, px.dtype) == buffer

        taken = self.queue.evict_oldest(same)
        if taken is not None:
            self._let_go(taken, "burst")
        return None

    def _let_go(self, item: Item, reason: str = "queue_full") -> None:
        """A queued frame dropped for room: its record, its buffer back to the pool."""
        self.record_drop(item.payload, reason)
        self.recycle(item.payload)
        item.payload = None

    def submit(
        self,
        job: FrameJob,
        policy: OnFull,
        timeout: float | None = None,
        *,
        drop: str | None = None,
    ) -> None:
        """Count a logged frame and queue it (``drop``: drop it at once, for that reason); drops
        made to honour the bound become ``dropped`` records. Starts the workers on the first
        frame."""
        self.start()
        self.stats.add(job.source, "logged")
        if drop is not None:
            if self.queue.closed:
                raise QueueClosed
            self.record_drop(job, drop)
            self.recycle(job)  # a camera format's planes were copied all the same
            return
        for old in self.queue.put(Item(job, job.frame.nbytes), policy, timeout):
            self._let_go(old)

    def recycle(self, job: FrameJob) -> None:
        """Give a finished (or dropped) frame's buffer back to the pool."""
        frame = job.frame
        if frame.pooled and frame.pixels is not None:
            in_flight = max(0, self.queue.bytes - frame.pixels.nbytes)
            self.pool.give(frame.pixels, limit=self.queue.max_bytes - in_flight)
            frame.pixels = None

    def queue_event(self, record: dict[str, Any], created_ns: int) -> None:
        """Queue an event line from the caller's thread (a ``not_selected`` summary)."""
        self.start()
        try:
            self.queue.put_control(Item(EventJob(record, created_ns), 0))
        except QueueClosed:
            self.hold(record, created_ns)

    def record_drop(self, job: FrameJob, reason: str) -> None:
        """Count a dropped frame and queue its ``dropped`` record (never blocks).

        Records of drops made while one batch waits for a worker join that batch: a burst's
        drops take a worker (and the GIL) once per batch, not once per frame."""
        event = self._drop_record(job, reason)
        with self._drops_lock:
            self._drops.append(event)
            if self._drops_queued:
                return
            self._drops_queued = True
        self.queue.put_control(Item(_DROPS, 0))

    def _take_drops(self) -> list[EventJob]:
        with self._drops_lock:
            drops, self._drops = self._drops, []
            self._drops_queued = False
        return drops

    def _write_drops(self) -> None:
        """A worker's part of ``record_drop``: append the batch's records (or hold them)."""
        drops = self._take_drops()
        if self.stats.held or self.backoff.reason is not None:  # keep the index's order
            for e in drops:
                self.hold(e.record, e.created_ns)
            return
        try:
            self.index.append_many([(e.record, e.created_ns) for e in drops])
        except BaseException as exc:  # held for later, as any event line
            self.report(storage_reason(exc), exc)
            for e in drops:
                self.hold(e.record, e.created_ns)

    def _drop_record(self, job: FrameJob, reason: str) -> EventJob:
        self.stats.add(job.source, "dropped")
        with self.stats.lock:
            self.stats.dropped_by_reason[reason] += 1
        rec = dropped_record(job.record, reason, frame_fields(job.frame))
        return EventJob(rec, job.created_ns)

    def append_event(self, record: dict[str, Any], created_ns: int) -> None:
        """Append an event line now, or hold it (behind held ones, or while paused)."""
        if self.stats.held or self.backoff.reason is not None:
            self.hold(record, created_ns)
            return
        try:
            self.index.append(record, created_ns)
        except OSError as err:
            self.report(storage_reason(err), err)
            self.hold(record, created_ns)

    # -- background side --------------------------------------------------------------------------
    def _run(self) -> None:
        lower_priority(self.settings.worker_nice)
        batching = self.shards is not None
        stop = False
        while not stop:
            try:
                item = self.queue.get()
            except QueueClosed:
                return
            if item is None:
                continue
            batch = [item]
            # small frames already queued come along: their members go in together
            while batching and len(batch) < BATCH_FRAMES and _batchable(item):
                try:
                    item = self.queue.get(timeout=0)
                except QueueClosed:
                    stop = True
                    break
                if item is None:
                    break
                batch.append(item)
            self._process(batch)

    def _process(self, batch: list[Item]) -> None:
        """Write a batch of queued items; frames bound for shards are written together, once
        ``STAGED_BYTES`` of them are encoded and at the end."""
        staged: list[tuple[FrameJob, Member, float]] = []
        finished = 0  # items of the batch done with
        size = 0  # bytes staged
        try:
            for at, item in enumerate(batch, 1):
                before = len(staged)
                try:
                    payload = item.payload
                    if isinstance(payload, FrameJob):
                        if self.ring is not None and self.ring.holds(payload):
                            self.ring.hold_or_write(payload)
                        else:
                            self.write_guarded(payload, staged)
                    elif payload is _DROPS:
                        self._write_drops()
                    elif self.stats.held or self.backoff.reason is not None:
                        self.hold(payload.record, payload.created_ns)  # keep the index's order
                    else:
                        self.index.append(payload.record, payload.created_ns)
                except BaseException as exc:
                    self._unwritten(item.payload, exc)
                if len(staged) > before:
                    size += len(staged[-1][1].data)
                if size >= STAGED_BYTES:
                    self._write_staged(staged)
                    staged, size = [], 0
                    self._finish(batch[finished:at])
                    finished = at
            if staged:
                self._write_staged(staged)
        finally:
            self._finish(batch[finished:])

    def _finish(self, items: list[Item]) -> None:
        """Items written (or failed): their buffers back to the pool, their bytes off the queue."""
        for item in items:
            if isinstance(item.payload, FrameJob):
                self.recycle(item.payload)
                if self.ring is not None:
                    self.ring.written(item.payload)
            self.queue.done(item)

    def _unwritten(self, payload: FrameJob | EventJob, exc: BaseException) -> None:
        """A queued frame or event line the write path could not store: a counted failure, a
        ``spool_full`` drop, or an event line held for later."""
        if isinstance(exc, SpoolFull):  # the store is down and its spool is full: a counted drop
            if isinstance(payload, FrameJob):
                self.record_drop(payload, "spool_full")
            else:
                self.report("spool_full", exc)
                self.hold(payload.record, payload.created_ns)
        elif isinstance(payload, FrameJob):
            self._fail(payload, exc)
        else:  # an event line (a drop record) that could not be written: held for later
            self.report(storage_reason(exc), exc)
            self.hold(payload.record, payload.created_ns)

    def write_guarded(
        self, job: FrameJob, staged: list[tuple[FrameJob, Member, float]] | None = None
    ) -> None:
        """Write a frame unless storage is paused (fail fast) or below ``min_free_bytes`` (drop).
        With ``staged``, a frame bound for a shard is encoded and left there for
        ``_write_staged``."""
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
            if self._write_frame(job, staged):
                return
        except OSError as exc:
            self._storage_failed(exc)
            raise
        self._storage_worked()

    def _storage_failed(self, exc: OSError) -> None:
        if exc.errno in STORAGE_ERRNOS:
            self._pause_error = exc
            if self.backoff.failed(storage_reason(exc)):
                self.maintenance.wake()  # a full disk: let retention free what it may
        else:
            self.backoff.succeeded()

    def _storage_worked(self) -> None:
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

    def _write_staged(self, staged: list[tuple[FrameJob, Member, float]]) -> None:
        """Store the shard members ``write_guarded`` left in ``staged`` together, then count
        each frame written or failed."""
        assert self.shards is not None
        t1 = time.perf_counter()
        try:
            errors = put_members(self.shards, self.settings, [m for _, m, _ in staged])
        except BaseException as exc:
            errors = [exc] * len(staged)
        write_s = (time.perf_counter() - t1) / len(staged)
        done = []
        for (job, member, encode_s), error in zip(staged, errors, strict=True):
            if error is None:
                done.append((job, len(member.data), encode_s, write_s))
                continue
            if isinstance(error, OSError):
                self._storage_failed(error)
            self._unwritten(job, error)
        if done:
            self._written(done)
            self._storage_worked()

    def _codec_fields(self, codec: Codec, params: dict[str, Any]) -> dict[str, Any]:
        """``image.format``, ``image.lossless`` and ``image.encoder`` of a codec and parameters,
        made once per pair (each record gets its own copy of the dict, sharing the values)."""
        key = (codec.name, id(params))
        hit = self._fields.get(key)
        if hit is None or hit[0] is not params:
            fields = codec_fields(
                codec.name, lossless=codec.is_lossless(params), library=codec.library,
                version=codec.version, params=params,
            )  # fmt: skip
            hit = self._fields[key] = (params, fields)
        return hit[1]

    def _write_frame(
        self, job: FrameJob, staged: list[tuple[FrameJob, Member, float]] | None = None
    ) -> bool:
        """Encode a frame and store it, or (``staged`` given, bound for a shard) leave it in
        ``staged`` and return True."""
        frame, rec = job.frame, job.record
        image = rec["image"]
        image.update(frame_fields(frame))
        t0 = time.perf_counter()
        body: str | None = None  # the record as embedded, serialised once
        if frame.encoded is not None:
            fmt = frame.encoded_format or "jpeg"
            ext, mime = extension_of(fmt)
            lossless = encoded_lossless(frame.encoded, fmt)
            image.update(passthrough_fields(fmt, lossless=lossless))
            key = image_key(
                job.created_ns, job.source, image["seq"], job.writer or self.writer, ext
            )
            rec["file"] = planned_file(key, mime, ext)
            tags = exif.read(frame.encoded, fmt)
            if tags:
                captured = None if job.captured_given else exif.capture_time_ns(tags)
                add_exif(rec, tags, captured)
            data, embedded = frame.encoded, False
        else:
            codec = job.codec
            key = image_key(
                job.created_ns, job.source, image["seq"], job.writer or self.writer, codec.extension
            )
            image.update(self._codec_fields(codec, job.params))
            rec["file"] = planned_file(key, codec.mime_type, codec.extension)
            if job.encoded is not None:  # held in the ring, encoded bare: the record goes in now
                pixels = None  # nothing to verify against: the pixels were let go when held
                body = dumps(ordered(rec))
                inside = codec.embed(job.encoded, body)
                if inside is None and codec.embeds_while_encoding(job.params):
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
                problem = self.verifier.compare(codec, pixels, data)
                self.stats.add(job.source, "verified")
                if problem is not None:
                    self.stats.add(job.source, "verify_failed")
                    self.report(
                        "verify", CodecError(f"{codec.name} {job.params}: {key}: {problem}")
                    )
        t1 = time.perf_counter()
        if staged is not None and to_shard(self.shards, self.settings, data, embedded):
            staged.append((job, Member(key, data, rec, body, job.created_ns), t1 - t0))
            return True
        put_frame(
            self.store, self.index, self.shards, self.settings, key, data, rec, body, embedded,
            job.created_ns,
        )  # fmt: skip
        self._written([(job, len(data), t1 - t0, time.perf_counter() - t1)])
        return False

    def _written(self, done: list[tuple[FrameJob, int, float, float]]) -> None:
        """Count stored frames (job, bytes, encode and write seconds; one lock for them all) and
        run the ``on_written`` hooks and the encoding checks on their records."""
        with self.stats.lock:
            counts, by_source = self.stats.counts, self.stats.by_source
            for job, n, encode_s, write_s in done:
                mine = by_source[job.source]
                counts["written"] += 1
                counts["bytes_written"] += n
                mine["written"] += 1
                mine["bytes_written"] += n
                if job.trigger is not None:
                    counts["triggered"] += 1
                    mine["triggered"] += 1
                counts["encode_ns"] += int(encode_s * 1e9)
                counts["write_ns"] += int(write_s * 1e9)
        for job, _, _, _ in done:
            checks = job.frame.pixels is not None and self.checker.due()
            if not self.on_written and not checks:
                continue
            final = ordered(job.record)  # schema order for the hooks and encoding events (a copy)
            try:
                for hook in self.on_written:
                    hook(final)
                if checks:
                    self.checker.run(job, final)
            except Exception as exc:  # the frame is stored: a hook's error is reported only
                self.report("on_written", exc)

    def _fail(
        self, job: FrameJob, exc: BaseException, *, reason: str | None = None, quiet: bool = False
    ) -> None:
        """Count a frame the write path could not store and write its ``failed`` record (held
        while the index cannot take it). ``quiet``: failed fast while paused (already reported)."""
        reason = reason or storage_reason(exc)
        self.stats.add(job.source, "failed")
        with self.stats.lock:
            self.stats.failed_by_reason[reason] += 1
            if not quiet:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if self.stats.first_error is None:
                    self.stats.first_error = exc
        if not quiet:
            self.report(reason, exc)
        rec = failed_record(job.record, reason, frame_fields(job.frame), exc)
        if self.stats.held or self.backoff.reason is not None:
            self.hold(rec, job.created_ns)
            return
        try:
            self.index.append(rec, job.created_ns)
        except OSError as err:
            self.report(storage_reason(err), err)
            self.hold(rec, job.created_ns)
        except Exception as err:  # a record the index cannot take at all: counted, never raised
            self.report("index", err)
            with self.stats.lock:
                self.stats.unrecorded += 1

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
            self.report(storage_reason(exc), exc)

    def report(self, kind: str, exc: BaseException) -> None:
        """Warn through the ``imagelog`` logger, at most once per kind per minute."""
        self._reporter.warn(kind, f"background error in {self.store.url}:", exc)


def _batchable(item: Item) -> bool:
    """Whether a queued item may take more along (``_run``): an event line, or a small frame
    still to be encoded (not one a ring trigger took)."""
    job = item.payload
    if isinstance(job, EventJob):
        return True
    if not isinstance(job, FrameJob) or job.encoded is not None:
        return False
    frame = job.frame
    if frame.encoded is not None:
        return len(frame.encoded) <= BATCH_FRAME_BYTES
    return frame.pixels is not None and frame.pixels.nbytes <= BATCH_FRAME_BYTES

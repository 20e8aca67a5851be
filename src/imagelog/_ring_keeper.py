"""The pipeline's ring side: what happens to a frame when a log has a ring (``ring=``).

The encoder threads hand every frame of a held source to ``RingKeeper.hold_or_write``: a frame a
trigger's window covers is written at once; any other is encoded bare and held in the ``Ring``
(and, with ``ring_dir=``, in a file) until a trigger takes it or the bounds push it out. This
module owns the triggers (from ``ImageLog.trigger()`` and from trigger files), the adoption of
a dead writer's held frames, and the ``expired`` summaries; ``_ring`` is the data structure,
``_ring_dir`` the files, ``_trigger_files`` the protocol with ``imagelog trigger``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import pixfmt
from ._jobs import EventJob, FrameJob
from ._queue import Item
from ._ring import Expiry, Ring, Trigger
from ._ring_dir import RingDir
from ._trigger_files import TriggerBoard
from .codecs import get as get_codec
from .errors import QueueClosed
from .frames import Frame
from .ids import uuid7
from .record import expired_record, mark_triggered, triggered_record
from .settings import Settings

if TYPE_CHECKING:
    from ._pipeline import Pipeline

__all__ = ["RingKeeper", "make_ring"]


def make_ring(settings: Settings) -> Ring | None:
    """The ring the settings ask for (``ring=``, ``ring_bytes=``), or None."""
    if settings.ring_bytes is None:
        return None
    r = settings.ring
    per_source = None if not isinstance(r, Mapping) else {k: int(v * 1e9) for k, v in r.items()}
    duration = None if r is None or isinstance(r, Mapping) else int(r * 1e9)
    return Ring(duration, settings.ring_bytes, per_source=per_source)


class RingKeeper:
    """The ring of one pipeline: holding, triggers, adoption, summaries and their counts."""

    def __init__(self, pipeline: Pipeline, ring: Ring) -> None:
        self.pipeline = pipeline
        self.ring = ring
        settings = pipeline.settings
        self.ring_dir = (
            None if settings.ring_dir is None else RingDir(settings.ring_dir, pipeline.writer)
        )
        self.board = TriggerBoard(pipeline.store, pipeline.writer, ring_dir=settings.ring_dir)
        #: triggers left (wall clock) before this are skipped: the ring held nothing then
        self.opened_wall_ns = time.time_ns()
        self.adopted = 0
        try:  # at once, so that ``imagelog trigger`` finds this writer from the start
            self.board.announce()
        except OSError as exc:
            pipeline.report("trigger-file", exc)
        if self.ring_dir is not None:
            self._adopt()

    # -- triggers ---------------------------------------------------------------------------------
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
        p = self.pipeline
        if p.stopping:
            return 0
        p.start()
        start = 0 if before_ns is None else at_ns - before_ns
        t = Trigger(tid, reason, at_ns, start, at_ns + after_ns, sources)
        jobs = self.ring.trigger(t)
        now = p.clock()
        rec = triggered_record(
            now_ns=now, rid=tid, reason=reason, writer=p.writer, at_ns=at_ns, start_ns=start,
            end_ns=t.end_ns, sources=None if sources is None else sorted(sources), origin=origin,
            frames=len(jobs),
        )  # fmt: skip
        with p.stats.lock:
            p.stats.counts["triggers"] += 1
        try:
            p.queue.put_control(Item(EventJob(rec, now), 0))
            for job in jobs:
                job.trigger = t
                mark_triggered(job.record, tid, reason)
                p.queue.put_control(Item(job, 0))  # not droppable: the ring counts its bytes
        except QueueClosed:
            pass
        return len(jobs)

    def poll_triggers(self) -> None:
        """Apply the triggers that ``imagelog trigger`` left (maintenance thread, every second).

        Each is applied once; one left before this writer opened (wall clock) is skipped: its
        ring held nothing then.
        """
        report = self.pipeline.report
        for tid, spec in self.board.poll(report):
            try:
                if int(spec.get("created_ns") or 0) < self.opened_wall_ns:
                    continue
                before, sources = spec.get("before_ns"), spec.get("sources")
                self.trigger(
                    tid=tid, reason=str(spec["reason"]), at_ns=int(spec["at_ns"]),
                    before_ns=None if before is None else int(before),
                    after_ns=int(spec.get("after_ns") or 0),
                    sources=None if sources is None else frozenset(map(str, sources)),
                    origin="file",
                )  # fmt: skip
            except (ValueError, KeyError, TypeError) as exc:
                report("trigger-file", ValueError(f"triggers/{tid}.json: {exc}"))

    # -- holding ----------------------------------------------------------------------------------
    def holds(self, job: FrameJob) -> bool:
        """Whether a frame goes through the ring (not taken by a trigger yet, a held source)."""
        return job.trigger is None and self.ring.holds(job.source)

    def hold_or_write(self, job: FrameJob) -> None:
        """Write a frame a trigger's window covers; encode and hold any other."""
        p = self.pipeline
        t = self.ring.covering(job.source, job.captured_ns)
        if t is None:
            frame = job.frame
            if frame.encoded is None:
                assert frame.pixels is not None
                t0 = time.perf_counter_ns()
                pixels = frame.pixels
                if frame.pixel_format is not None:  # as the write path stores them
                    pixels, layout = pixfmt.to_stored(pixels, frame.pixel_format)
                    if layout is not None:
                        job.record["image"]["layout"] = layout
                job.encoded = job.codec.encode(pixels, job.params)
                with p.stats.lock:
                    p.stats.counts["encode_ns"] += time.perf_counter_ns() - t0
                p.recycle(job)
                frame.pixels = None  # the ring holds the encoded bytes only
                nbytes = len(job.encoded)
            else:
                nbytes = len(frame.encoded)
            if self.ring_dir is not None:
                job.ring_path = self.ring_dir.save(
                    job.record["image"]["seq"], _header(job), job.encoded or frame.encoded or b""
                )
            t = self._push(job, nbytes)
            if t is None:
                return
            if job.ring_path is not None:
                RingDir.remove(job.ring_path)
                job.ring_path = None
        job.trigger = t
        mark_triggered(job.record, t.id, t.reason)
        p.write_guarded(job)

    def written(self, job: FrameJob) -> None:
        """After a frame a trigger took is written (or failed): free its bytes and its file."""
        if job.ring_nbytes:
            self.ring.release(job.ring_nbytes)
            job.ring_nbytes = 0
        if job.ring_path is not None and job.trigger is not None:
            RingDir.remove(job.ring_path)
            job.ring_path = None

    def _push(self, job: FrameJob, nbytes: int) -> Trigger | None:
        """Hold a frame in the ring; count (and remove the files of) the frames it pushes out."""
        p = self.pipeline
        seq = job.record["image"]["seq"]
        writer = job.writer or p.writer
        t, expired = self.ring.push(job, writer, job.source, job.captured_ns, seq, nbytes)
        for old in expired:
            p.stats.add(old.source, "expired")
            if old.job.ring_path is not None:
                RingDir.remove(old.job.ring_path)
            old.job = None  # its bytes are gone with it
        if expired:
            self.write_summary()
        return t

    def _adopt(self) -> None:
        """On open: take the held frames that dead writers left in ``ring_dir`` into the ring
        (a trigger can still save them; the bounds expire the rest, in their writer's books)."""
        from ._lifecycle import open_writers
        from .index.recover import writer_alive

        assert self.ring_dir is not None
        own = open_writers()
        for header, data, path, mtime in self.ring_dir.adopt(lambda w: writer_alive(w, own)):
            try:
                job = _job_of(header, data, path)
            except (KeyError, TypeError, ValueError) as exc:
                self.pipeline.report("ring-dir", ValueError(f"{path}: {exc}"))
                continue
            self.adopted += 1
            self.opened_wall_ns = min(self.opened_wall_ns, mtime)  # its triggers still count
            if self._push(job, len(data)) is not None:  # no trigger yet at open; kept for clarity
                self.pipeline.queue.put_control(Item(job, 0))

    # -- summaries and the end ----------------------------------------------------------------------
    def write_summary(self, *, force: bool = False) -> None:
        """Write the ``expired`` summary of the frames that left the ring, when a ring's worth
        has (or, with ``force``, any has)."""
        for w, summary in self.ring.take_summaries(force=force):
            e = self._summary_event(w, summary, "ring")
            self.pipeline.append_event(e.record, e.created_ns)

    def _summary_event(self, writer: str, e: Expiry, reason: str) -> EventJob:
        now = self.pipeline.clock()
        rec = expired_record(
            now_ns=now, rid=uuid7(now), reason=reason, writer=writer, frames=e.frames,
            nbytes=e.bytes, first_ns=e.first_ns, last_ns=e.last_ns, seqs=e.seq_ranges(),
            by_source=e.by_source,
        )  # fmt: skip
        return EventJob(rec, now)

    def close(self) -> list[EventJob]:
        """At close: expire what the ring holds; return the ``expired`` summaries to write."""
        p = self.pipeline
        for old in self.ring.expire_all():
            p.stats.add(old.source, "expired")
            if old.job.ring_path is not None:
                RingDir.remove(old.job.ring_path)
        events = [
            self._summary_event(w, s, "close") for w, s in self.ring.take_summaries(force=True)
        ]
        if self.ring_dir is not None:
            self.ring_dir.close()
        try:
            self.board.withdraw()
        except OSError as exc:
            p.report("trigger-file", exc)
        return events

    def stats(self) -> dict[str, Any]:
        """The ring's part of ``ImageLog.stats()``."""
        c = self.pipeline.stats.counts
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


def _header(job: FrameJob) -> dict[str, Any]:
    """What a held frame's file says besides its bytes (``_job_of`` reads it back)."""
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


def _job_of(header: dict[str, Any], data: bytes, path: str) -> FrameJob:
    """A held frame of another writer, from its file (``_header``)."""
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
    return FrameJob(
        frame, rec, get_codec(header["codec"]), header["params"], int(header["created_ns"]),
        header["source"], bool(header["captured_given"]), int(header["captured_ns"]),
        encoded=None if passthrough else data, ring_path=path, writer=rec["imagelog"]["writer"],
    )  # fmt: skip

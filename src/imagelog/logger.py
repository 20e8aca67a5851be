"""The public face: ``ImageLog`` and the module-level ``open``/``init``/``log`` conveniences."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeGuard

import numpy as np

from . import _lifecycle, codecs, pixfmt
from ._jobs import FrameJob
from ._lifecycle import LogState
from ._pipeline import Pipeline
from ._selector import Claims, NotSelected, Selector
from ._toplevel import get_default, init, log, open, trigger
from .codecs.base import Codec
from .errors import FormatMismatch, InvalidSetting, QueueClosed
from .frames import PREPARED_MIN_BYTES, Frame, normalise
from .ids import new_writer_id, uuid7
from .inputs import check_record_size, labels_of, level_of, meta_of, parse_time_ns, text_of
from .layout import LAYOUT, MANIFEST
from .record import base_record, check_manifest, dumps, new_manifest, not_selected_record
from .select import Select, as_select
from .settings import Settings, parse_duration
from .stores import Store

__all__ = ["ImageLog", "get_default", "init", "log", "open", "trigger"]

logger = logging.getLogger("imagelog")
_PASSTHROUGH = codecs.get("passthrough")
#: channel orders under which ``select=`` judges an array before it is copied
_EARLY_ORDERS = (None, "RGB", "BGR", "rgb", "bgr")
#: channel orders ``normalise`` takes (a frame with another is refused, so it evicts nothing)
_ORDERS = ("RGB", "RGBA", "BGR", "BGRA", "L")


class ImageLog:
    """A log of images: ``log()`` returns at once; background threads encode and write.

    Guarantees:

    - ``log()`` validates the frame in the caller's thread (bad input raises ``ValueError`` or
      ``TypeError`` there), copies it (unless ``copy=False``) and queues it; it never waits on a
      codec or a disk, except with ``on_full="block"`` while the byte-bounded queue is full.
    - Memory is bounded by ``max_queue_bytes``; frames dropped to honour it are counted in
      ``stats()`` and written to the index as ``event.action == "dropped"`` records.
    - An image file appears under its final name only when whole; its index line is written only
      after that. ``flush()`` returns once everything logged before it is on storage.
    - With a ring (``ring=``/``ring_bytes=``), frames are held, not written, until
      ``trigger()`` saves a window of them; ``flush()`` then waits until each frame logged
      before it is held or, if a trigger covers it, written.
    - Background failures (disk full, permission lost) are counted in ``stats()`` and reported
      through the ``imagelog`` logger; they never raise in the caller's thread, unless
      ``strict=True`` (or ``IMAGELOG_STRICT=1``), where ``flush()``/``close()`` re-raise the first.

    Environment: ``IMAGELOG_MAX_QUEUE_BYTES``, ``IMAGELOG_STRICT``, ``IMAGELOG_DIR`` (for ``init()``).

    Example:
        >>> import numpy as np, imagelog, tempfile
        >>> with imagelog.open(tempfile.mkdtemp()) as log:
        ...     rid = log.log(np.zeros((48, 64, 3), np.uint8), source="cam1", score=0.5)
        >>> log.stats()["written"]
        1
    """

    def __init__(
        self, store: Store, settings: Settings, *, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._state = LogState.OPEN
        self._close_lock = threading.Lock()
        self._resolved: dict[tuple[str, str, int, bool, bool], tuple[Codec, dict[str, Any]]] = {}
        self._last_captured: int | None = None  # the default ``at`` of trigger()
        self._small: dict[tuple[str, str, int, bool], tuple[Codec, dict[str, Any]]] = {}
        self._write_manifest()  # first: a run this version must not append to is refused here
        self._reset_writer()
        _lifecycle.register(self)
        self._pipeline.start_maintenance()  # repairs torn tails, scans for retention: background

    def _reset_writer(self) -> None:
        self._pid = os.getpid()
        self._writer = new_writer_id()
        self._seq = itertools.count(1)
        self._selector = Selector(Claims(self._store, self._writer, self._clock))
        self._select_cache: dict[str, Select] = {}
        self._pipeline = Pipeline(
            self._store, self._settings, self._writer, clock=self._clock, repair=self._repair
        )

    def _repair(self) -> None:
        """Quarantine torn last lines that dead writers left in the index (on open, background)."""
        from .index.recover import repair, writer_alive

        if self._store.local_root is None:  # object stores: no cheap tail check
            return
        own = _lifecycle.open_writers()
        for fixed in repair(self._store, tails_only=True, is_live=lambda w: writer_alive(w, own)):
            logger.warning(
                "imagelog: repaired %s: moved %d torn line(s) (%d bytes) to %s",
                fixed.key, fixed.lines, fixed.bytes, fixed.quarantine,
            )  # fmt: skip

    def _write_manifest(self) -> None:
        """Leave the manifest in a new run; in an existing one, check that this version may
        append to it (``UnsupportedRun``: a newer schema, or a file that is not a manifest)."""
        if self._store.exists(MANIFEST):  # (an object store that is down answers False)
            try:
                data = self._store.get(MANIFEST)
            except FileNotFoundError:  # removed since: the run is what its index says
                return
            check_manifest(data, f"{self._store.url.rstrip('/')}/{MANIFEST}")
            return
        from importlib.metadata import version

        manifest = new_manifest(
            now_ns=time.time_ns(), version=version("imagelog"), layout=LAYOUT,
            fmt=self._settings.format,
        )  # fmt: skip
        self._store.put(MANIFEST, (dumps(manifest) + "\n").encode("utf-8"))

    # -- public API -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Where this log writes (folder path or URL)."""
        return self._store.url

    @property
    def writer(self) -> str:
        """This writer's id (one per process; a forked child gets a new one)."""
        return self._writer

    @property
    def settings(self) -> Settings:
        """The validated settings."""
        return self._settings

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._state is not LogState.OPEN

    def log(
        self,
        frame: object,
        /,
        *,
        source: str = "default",
        message: str | None = None,
        labels: Mapping[str, Any] | None = None,
        captured_at: object = None,
        format: str | None = None,
        copy: bool = True,
        channel_order: str | None = None,
        size: tuple[int, int] | None = None,
        mode: str | None = None,
        pixel_format: str | None = None,
        stride: int | None = None,
        level: str = "info",
        select: Any = None,
        meta: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> str:
        """Queue one image and return its record id (a UUIDv7 string that sorts by time).

        Args:
            frame: numpy array (HxW, HxWx1/3/4; uint8, uint16, float32, bool), PIL image,
                encoded JPEG/PNG/WebP/JPEG XL bytes (stored untouched), or raw bytes with ``size``.
            source: the camera or stream this frame comes from.
            message: a human message for the record.
            labels: ECS labels (str -> str), for filtering.
            captured_at: capture time: a datetime (naive: local time), Unix seconds or Unix
                nanoseconds (int); other numbers (milliseconds, a monotonic clock) raise.
                Default: now, or EXIF.
            format: a format or preset for this frame (default: per source, then the log's).
            copy: copy the frame before returning (False hands the array over to imagelog).
            channel_order: ``"BGR"`` for OpenCV frames (stored as RGB).
            size: (width, height) of raw pixel bytes; ``mode`` their mode (``"RGB"``, ``"L"``...).
            pixel_format: the camera encoding of a buffer (with ``size``) or array:
                ``"bayer_rggb8"`` (``bggr``, ``gbrg``, ``grbg``; 8, 10, 12, 14, 16 bits),
                ``"yuyv"``, ``"uyvy"``, ``"nv12"``, ``"nv21"``, ``"i420"``, ``"mono8"``,
                ``"mono16"``, ``"rgb8"``, ``"bgr8"`` ... (ROS/Foxglove names; see
                ``imagelog.pixfmt``). Stored as delivered, losslessly; recorded in
                ``image.pixel_format``.
            stride: bytes per row of a padded buffer (ROS ``step``); default: unpadded.
            level: the record's ``log.level``: ``"debug"``, ``"info"``, ``"warning"``,
                ``"error"`` or ``"critical"``.
            select: a policy for this frame instead of the log's (``imagelog.select``); a
                frame it passes over still gets an id, counted as ``not_selected``.
            meta: metadata as a dict (the way to store names that are parameters of ``log()``,
                such as ``meta={"mode": "train"}``); merged with ``**fields``.
            **fields: more metadata, anything JSON can hold; stored in the record's ``meta``.

        Returns:
            The record id.

        Raises:
            ValueError: a bad frame, format or value (``imagelog.InvalidFrame`` ...).
            TypeError: an unsupported input type/dtype, metadata JSON cannot hold, a parameter
                of the wrong type (``copy="yes"``, ``level=3``).
            RuntimeError: the log is closed, or ``log()`` was called from an imagelog thread.
        """
        if self._pid != os.getpid():  # a fork without the at-fork hook (e.g. os.fork in C code)
            self._after_fork_child()
        if self._state is not LogState.OPEN:
            raise RuntimeError(
                "cannot log to a closed ImageLog; open a new one with imagelog.open()"
            )
        pipeline = self._pipeline
        if pipeline.is_worker_thread():
            raise RuntimeError("log() was called from an imagelog background thread")
        if not isinstance(copy, bool):
            raise TypeError(
                f"copy must be True or False, got {copy!r}; "
                f"to store it as metadata pass meta={{'copy': {copy!r}}}"
            )
        level = level_of(level)
        for name, value in (("format", format), ("channel_order", channel_order),
                            ("pixel_format", pixel_format), ("mode", mode)):  # fmt: skip
            if value is not None and not isinstance(value, str):
                raise TypeError(
                    f"{name} must be a str, not {type(value).__name__} {value!r}; "
                    f"to store it as metadata pass meta={{{name!r}: {value!r}}}"
                )
        if not source or not isinstance(source, str):
            raise ValueError(f"source must be a non-empty str, got {source!r}")
        text_of(source, "source")
        meta_json = meta_of(meta, fields)
        labels_json = labels_of(labels)
        if message is not None and not isinstance(message, str):  # type: ignore[redundant-expr,unused-ignore]
            message = str(message)  # type: ignore[unreachable,unused-ignore]
        if message is not None:
            text_of(message, "message")
        check_record_size(meta_json, labels_json, message, source)
        given = None if captured_at is None else parse_time_ns(captured_at)
        policy = self._policy_for(source, select)
        early = (
            policy is not None
            and _plausible(frame)
            and pixel_format is None
            and stride is None
            and channel_order in _EARLY_ORDERS
        )
        if early:  # decided before the copy, on the caller's array
            assert policy is not None
            skipped = self._select_or_skip(policy, source, frame, labels_json, meta_json, given)
            if skipped is not None:
                return skipped
        # A full queue is dealt with before the copy: drop_oldest lets the oldest frames go first,
        # so their buffers take this copy (no fresh pages); drop_newest drops this frame uncopied.
        drop_reason = (
            pipeline.make_room(
                frame.nbytes,
                self._settings.on_full,
                _buffer_of(frame) if copy and pixel_format is None and stride is None else None,
            )
            if _plausible(frame) and (channel_order or "RGB").upper() in _ORDERS
            else None
        )
        drop_now = drop_reason is not None
        copy = copy and not drop_now
        created = self._clock()
        f = normalise(
            frame, copy=copy, channel_order=channel_order, size=size, mode=mode,
            pool=pipeline.pool, pixel_format=pixel_format, stride=stride, keep=not drop_now,
        )  # fmt: skip
        if policy is not None and not early:  # not an array: decided on the normalised frame
            skipped = self._select_or_skip(policy, source, f.pixels, labels_json, meta_json, given)
            if skipped is not None:
                return skipped
        codec, params = self._codec_for(f, source, format)
        small = f.width * f.height < codecs.SMALL_FRAME_PIXELS
        if small and f.encoded is None and f.pixel_format is None:
            codec, params = self._small_codec_for(f, source, format, codec, params)
        captured = created if given is None else given
        self._last_captured = captured
        seq = next(self._seq)
        rid = uuid7(created)
        record = base_record(
            rid=rid, seq=seq, source=source, captured_ns=captured, created_ns=created,
            message=message, level=level, labels=labels_json, meta=meta_json, writer=self._writer,
            pid=self._pid,
        )  # fmt: skip
        job = FrameJob(f, record, codec, params, created, source, given is not None, captured)
        try:
            pipeline.submit(job, self._settings.on_full, drop=drop_reason)
        except QueueClosed:
            raise RuntimeError("cannot log to a closed ImageLog") from None
        return rid

    def trigger(
        self,
        reason: str,
        *,
        before: float | str | timedelta | None = None,
        after: float | str | timedelta = 0,
        sources: Iterable[str] | None = None,
        at: object = None,
    ) -> str:
        """Save what the ring holds around now: every frame captured in ``[at - before, at +
        after]`` is written as an ordinary record, and frames still to come in that window are
        written as they arrive. Returns the trigger's id.

        The window is on the capture axis (``captured_at=`` of ``log()`` when given, else log
        time) and inclusive at both ends. Saved records carry ``event.reason == reason`` and the
        trigger's id in ``labels.trigger`` (and ``imagelog.trigger``); a ``triggered`` event
        record says when and what. Overlapping windows save each frame once (it carries the id of
        the first trigger that saved it).

        Args:
            reason: why (``"defect"``), positional or ``reason=``; goes to ``event.reason``.
            before: how far back (seconds, ``"10s"``, timedelta); None: all that the ring holds.
            after: how long to keep recording after ``at``.
            sources: only these sources (default: all, including sources not seen yet).
            at: the moment of the event (datetime, Unix seconds or ns); default: the capture
                time of the last frame logged (so "the frame I just logged shows a defect"
                works whether frames carry ``captured_at=`` or not), or now if none was.

        Raises:
            RuntimeError: the log has no ring (``imagelog.open(..., ring="30s")``) or is closed.
            ValueError: a bad reason, duration or source list.

        Example:
            >>> import numpy as np, imagelog, tempfile
            >>> with imagelog.open(tempfile.mkdtemp(), ring="30s") as log:
            ...     for i in range(10):
            ...         _ = log.log(np.zeros((8, 8), np.uint8), captured_at=1_764_000_000 + i)
            ...     _ = log.trigger("defect", before="3s", at=1_764_000_008)  # frames 5..8
            ...     _ = log.flush()
            ...     (log.stats()["triggered"], log.stats()["ring_frames"])
            (4, 6)
        """
        if self._state is not LogState.OPEN:
            raise RuntimeError("cannot trigger a closed ImageLog")
        ring = self._pipeline.ring
        if ring is None:
            raise RuntimeError(
                "this log has no ring: open it with imagelog.open(path, ring='30s') "
                "(or ring_bytes=) to use trigger()"
            )
        if not isinstance(reason, str) or not reason:  # type: ignore[redundant-expr,unused-ignore]
            raise InvalidSetting(f"trigger reason must be a non-empty str, got {reason!r}")
        text_of(reason, "trigger reason")
        before_ns = None if before is None else _duration_ns(before, "before")
        after_ns = _duration_ns(after, "after")
        if isinstance(sources, str):
            raise TypeError("sources must be a list of source names, not a str")
        chosen = None if sources is None else frozenset(sources)
        if chosen is not None and not all(isinstance(s, str) and s for s in chosen):  # type: ignore[redundant-expr,unused-ignore]
            raise InvalidSetting(f"sources must be non-empty strs, got {sorted(map(str, chosen))}")
        for name in chosen or ():
            text_of(name, "sources")
        if at is not None:
            at_ns = parse_time_ns(at, name="at")
        else:
            last = self._last_captured
            at_ns = self._clock() if last is None else last
        tid = uuid7(self._clock())
        ring.trigger(
            tid=tid, reason=reason, at_ns=at_ns, before_ns=before_ns, after_ns=after_ns,
            sources=chosen,
        )  # fmt: skip
        return tid

    def _policy_for(self, source: str, select: Any) -> Select | None:
        """The ``select=`` policy of a frame: the call's, else its source's, else the log's."""
        if select is not None:
            if isinstance(select, Select):
                return select
            hit = self._select_cache.get(select) if isinstance(select, str) else None
            if hit is None:
                hit = as_select(select)
                if isinstance(select, str):
                    self._select_cache[select] = hit
            return hit
        chosen = self._settings.select
        if chosen is None or isinstance(chosen, Select):
            return chosen
        return chosen.get(source) or chosen.get("*")

    def _select_or_skip(
        self,
        policy: Select,
        source: str,
        pixels: Any,
        labels: Mapping[str, str],
        meta: dict[str, Any],
        given: int | None,
    ) -> str | None:
        """Apply a policy: None to store the frame, else the id of a frame not stored (counted,
        and summed up in a ``not_selected`` event). Metadata and labels are checked already."""
        created = self._clock()
        captured = created if given is None else given
        view = meta if not labels or "labels" in meta else {**meta, "labels": labels}
        sel = self._selector
        reason = sel.decide(policy, source, pixels, view, captured, created)
        if reason is None:
            due = sel.take_due(created)
            if due is not None:
                self._write_not_selected(due)
            return None
        self._last_captured = captured
        seq = next(self._seq)
        self._pipeline.stats.add(source, "logged")
        due = sel.not_selected(source, reason, seq, captured, created)
        if due is not None:
            self._write_not_selected(due)
        return uuid7(created)

    def _write_not_selected(self, n: NotSelected) -> None:
        now = self._clock()
        rec = not_selected_record(
            now_ns=now, rid=uuid7(now), writer=self._writer, frames=n.frames,
            first_ns=n.first_ns, last_ns=n.last_ns, seqs=n.seq_ranges(), by_source=n.by_source,
            by_reason=n.by_reason,
        )  # fmt: skip
        self._pipeline.queue_event(rec, n.created_ns)

    def _flush_not_selected(self) -> None:
        pending = self._selector.take_pending()
        if pending is not None:
            self._write_not_selected(pending)

    def _codec_for(self, f: Frame, source: str, format: str | None) -> tuple[Codec, dict[str, Any]]:
        if f.encoded is not None:
            return _PASSTHROUGH, {}
        spec = format or self._settings.formats.get(source) or self._settings.format
        raw = f.pixel_format is not None and pixfmt.parse(f.pixel_format).raw
        key = (spec, f.dtype, f.channels, format is None, raw)
        hit = self._resolved.get(key)
        if hit is None:
            options = self._settings.codec_options if format is None else None
            hit = codecs.resolve(spec, dtype=f.dtype, channels=f.channels, options=options)
            if raw and not hit[0].is_lossless(hit[1]):
                # a lossy codec would smear a Bayer mosaic or YUV planes beyond repair: presets
                # store them losslessly, an explicit lossy format is refused
                if codecs.parse_spec(spec)[0].lower() not in codecs.PRESETS:
                    raise FormatMismatch(
                        f"format {spec!r} is lossy; {f.pixel_format} frames are stored "
                        "losslessly: use 'lossless' (or convert to RGB first)"
                    )
                hit = codecs.resolve("lossless", dtype=f.dtype, channels=f.channels)
            hit[0].validate(f, hit[1])
            self._resolved[key] = hit
        return hit

    def _small_codec_for(
        self, f: Frame, source: str, format: str | None, codec: Codec, params: dict[str, Any]
    ) -> tuple[Codec, dict[str, Any]]:
        """The codec for a small frame: the ``lossless`` preset's small-frame choice
        (``codecs.small_frame_spec``), or the one already resolved."""
        spec = format or self._settings.formats.get(source) or self._settings.format
        key = (spec, f.dtype, f.channels, format is None)
        hit = self._small.get(key)
        if hit is None:
            small = codecs.small_frame_spec(spec, f.dtype)
            tuned = format is None and bool(self._settings.codec_options)
            hit = (codec, params)
            if small is not None and not tuned:
                try:
                    cand = codecs.resolve(small, dtype=f.dtype, channels=f.channels)
                    cand[0].validate(f, cand[1])
                    hit = cand
                except ValueError:  # the small-frame codec cannot hold it: keep the preset's
                    pass
            self._small[key] = hit
        return hit

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged before this call is written; False if ``timeout`` ran out."""
        if self._pipeline.is_worker_thread():
            raise RuntimeError("flush() was called from an imagelog background thread")
        self._flush_not_selected()
        ok = self._pipeline.flush(timeout)
        self._raise_if_strict()
        return ok

    def _raise_if_strict(self) -> None:
        if self._settings.strict:
            err = self._pipeline.take_first_error()
            if err is not None:
                raise err

    def close(self, timeout: float | None = None) -> None:
        """Drain the queue (up to ``timeout``, default ``close_timeout``) and stop; idempotent.

        Frames still queued when the timeout runs out are counted as dropped
        (reason ``close_timeout``) and reported.
        """
        with self._close_lock:
            if self._state is LogState.CLOSED:
                return
            self._state = LogState.CLOSING
            limit = self._settings.close_timeout if timeout is None else timeout
            self._flush_not_selected()
            left = self._pipeline.stop(limit)
            try:
                self._store.close()  # object stores: stop their threads, upload the spool
            except Exception as exc:
                self._pipeline.report("store-close", exc)
            if left:
                logger.warning(
                    "imagelog: %d frame(s) not written to %s: close() timed out after %.1fs",
                    left, self.url, limit,
                )  # fmt: skip
            self._state = LogState.CLOSED
            _lifecycle.unregister(self)
        self._raise_if_strict()

    def _close_at_exit(self) -> None:
        self.close()

    def _after_fork_child(self) -> None:
        """In a forked child: a fresh writer (new id, no inherited threads or queued frames)."""
        self._close_lock = threading.Lock()
        self._reset_writer()

    def stats(self) -> dict[str, Any]:
        """Counters: logged, written, dropped, failed, queue and byte figures, per source.

        With ``select=``, also: ``not_selected`` (frames it did not store), with
        ``not_selected_by_reason``, and per source the same two.

        With a ring, also: ``expired`` (frames that left the ring untriggered), ``triggered``
        (frames written because a trigger saved them), ``triggers``, ``ring_frames``,
        ``ring_bytes`` (held, or taken by a trigger and not yet written), ``max_ring_bytes``,
        ``peak_ring_bytes``; per source ``expired`` and ``triggered``.
        """
        out = self._pipeline.stats_dict()
        total, by_reason, by_source = self._selector.stats()
        if total or self._settings.select is not None:
            out["not_selected"] = total
            out["not_selected_by_reason"] = by_reason
            for src, counts in out["by_source"].items():
                reasons = by_source.get(src, {})
                counts["not_selected"] = sum(reasons.values())
                counts["not_selected_by_reason"] = reasons
        return out

    def __enter__(self) -> ImageLog:
        """Use as a context manager; closing drains."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close (drain) on leaving the block."""
        self.close()

    def __repr__(self) -> str:
        return f"<ImageLog {self.url} writer={self._writer} {self._state}>"


def _plausible(frame: object) -> TypeGuard[np.ndarray[Any, Any]]:
    """An array that looks like a frame ``normalise`` takes (so a bad one evicts nothing)."""
    return (
        isinstance(frame, np.ndarray)
        and frame.size > 0
        and frame.dtype.char in "BHf?"
        and (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4)))
    )


def _buffer_of(frame: np.ndarray[Any, Any]) -> tuple[tuple[int, ...], np.dtype[Any]] | None:
    """The shape and dtype of a large frame's copy (``normalise``: HxWx1 -> HxW, native byte
    order), or None for a frame under ``PREPARED_MIN_BYTES``."""
    if frame.nbytes < PREPARED_MIN_BYTES:
        return None
    shape = frame.shape[:2] if frame.ndim == 3 and frame.shape[2] == 1 else frame.shape
    dtype = frame.dtype if frame.dtype.isnative else frame.dtype.newbyteorder("=")
    return shape, dtype


def _duration_ns(value: float | str | timedelta, name: str) -> int:
    return int(parse_duration(value, name=name) * 1e9)

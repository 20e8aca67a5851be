"""Measure every registered codec on this machine: frames/s per core, size, exactness, GIL.

The engine behind ``imagelog bench`` and ``python -m bench.codecs``. Frames are camera-like (a
photo mosaic with sensor noise from ``imagelog.samples``, or the user's own image), never random
noise, which would measure nothing. Timing runs in a worker thread, as the logger's encoders do,
single-threaded per frame (codecs with thread pools are pinned to one thread); the figure is the
median over repetitions, so one hiccup of a noisy machine does not move it. Nothing here asserts a
timing: it reports what it saw.

>>> rows = measure_all(synthetic_frames(48, 32, "uint8"), ["qoi", "png:level=1"], seconds=0.01)
>>> [(r.spec, r.lossless, r.exact) for r in rows]
[('qoi', True, True), ('png:level=1', True, True)]
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import codecs
from .codecs.base import Codec, Pixels, as_logged
from .frames import channels_of

__all__ = [
    "CANDIDATES",
    "Measurement",
    "available_cores",
    "candidates_for",
    "frames_from_image",
    "gil_speedup",
    "measure",
    "measure_all",
    "synthetic_frames",
]

#: Specs measured by default: the presets' choices and their nearest rivals.
CANDIDATES: tuple[str, ...] = (
    "jxl:effort=1",
    "jxl:effort=1,encoder=imagecodecs",
    "jxl:effort=2",
    "qoi",
    "png:level=1",
    "png:level=6",
    "webp",
    "tiff",
    "npy",
    "npy:compression=lz4",
    "jpeg:quality=90",
    "jpeg:quality=85",
    "jxl:distance=1.0,effort=3",
    "webp:lossless=false",
    "avif",
)
#: Specs too slow to measure at 1080p in a quick run (about 0.3-1 s per frame).
SLOW: frozenset[str] = frozenset({"png:level=6", "avif", "jxl:effort=2", "webp:lossless=false"})


@dataclasses.dataclass(slots=True)
class Measurement:
    """One codec spec measured on one set of frames."""

    spec: str
    codec: str
    lossless: bool
    fps: float
    """Frames per second on one core (median of the repetitions)."""
    bytes_per_frame: float
    size_pct: float
    """Encoded size as a percentage of the raw pixel bytes."""
    exact: bool | None
    """Lossless specs: every frame decoded equal to its input. Lossy specs: None."""
    psnr_db: float | None
    releases_gil: bool
    """What the codec declares."""
    speedup_2_threads: float | None = None
    """Measured: 2 x T(1 thread) / T(2 threads at once); about 2 means the GIL is released."""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-able dict."""
        return dataclasses.asdict(self)


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def synthetic_frames(width: int, height: int, dtype: str, count: int = 3) -> list[Pixels]:
    """Camera-like frames: panning photo mosaic with sensor noise, or a 16-bit depth-like map."""
    from .samples import CameraSimulator, depth_frame

    if dtype == "uint16":
        base = depth_frame(width, height).astype(np.int32)
        rng = np.random.default_rng(0)
        frames = []
        for i in range(count):  # a sensor's depth jitter of a few millimetres, frame to frame
            jitter = rng.normal(0, 2.0, base.shape).astype(np.int32) if i else 0
            frames.append(
                np.clip(np.roll(base, 3 * i, axis=1) + jitter, 0, 65535).astype(np.uint16)
            )
        return frames
    if dtype != "uint8":
        raise ValueError(f"dtype must be 'uint8' or 'uint16', got {dtype!r}")
    cam = CameraSimulator(width, height, seed=1)
    return [cam.frame() for _ in range(count)]


def frames_from_image(path: str | os.PathLike[str], dtype: str = "uint8") -> list[Pixels]:
    """The user's own image as the frame set (16-bit images keep their depth)."""
    from PIL import Image

    with Image.open(Path(path)) as im:
        if im.mode.startswith("I;16") or im.mode == "I":
            arr = np.asarray(im).astype(np.uint16)
        else:
            arr = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
    if dtype == "uint16" and arr.dtype == np.uint8:
        arr = arr.astype(np.uint16) * 257
    return [np.ascontiguousarray(arr)]


def candidates_for(dtype: str, channels: int, *, include_slow: bool = True) -> list[str]:
    """The default specs whose codec takes frames of this dtype and channel count."""
    out = []
    for spec in CANDIDATES:
        if not include_slow and spec in SLOW:
            continue
        name, _ = codecs.parse_spec(spec)
        codec = codecs.get(name)
        if dtype in codec.dtypes and channels in codec.channels:
            out.append(spec)
    return out


def _same(decoded: Pixels, frame: Pixels) -> bool:
    decoded = as_logged(decoded, frame.dtype.name, channels_of(frame))
    return decoded.dtype == frame.dtype and bool(np.array_equal(decoded, frame))


def _psnr(decoded: Pixels, frame: Pixels) -> float:
    peak = float(np.iinfo(frame.dtype).max) if frame.dtype.kind in "ui" else 1.0
    err = np.mean((decoded.astype(np.float64) - frame.astype(np.float64)) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(peak**2 / err))


def _in_thread(fn: Callable[[], float]) -> float:
    box: list[float] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target, name="codec-bench")
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return box[0]


def _encode_fn(codec: Codec, params: dict[str, Any]) -> Callable[[Pixels], bytes]:
    return lambda frame: codec.encode(frame, params)


def measure(
    spec: str, frames: Sequence[Pixels], *, seconds: float = 1.0, min_reps: int = 5
) -> Measurement:
    """Measure one spec on ``frames``: median frames/s on one core, size, exactness.

    Repetitions cycle through the frames after one warm-up pass, until both ``min_reps`` and
    ``seconds`` are reached (3 repetitions for codecs slower than 0.4 s a frame). Small frames
    are batched to about 20 ms a repetition so the timer's resolution does not matter.
    """
    frame0 = frames[0]
    codec, params = codecs.resolve(spec, dtype=frame0.dtype.name, channels=channels_of(frame0))
    encode = _encode_fn(codec, params)
    lossless = codec.is_lossless(params)
    raw = sum(f.nbytes for f in frames)
    try:
        encoded = [encode(f) for f in frames]  # warm-up, and the bytes to check
    except Exception as exc:
        return Measurement(spec, codec.name, lossless, 0.0, 0.0, 0.0, None, None,
                           codec.releases_gil, error=f"{type(exc).__name__}: {exc}")  # fmt: skip
    size = sum(len(b) for b in encoded)
    exact: bool | None = None
    psnr: float | None = None
    decoded = [codec.decode(b) for b in encoded]
    if lossless:
        exact = all(_same(d, f) for d, f in zip(decoded, frames, strict=True))
    else:
        psnr = statistics.fmean(_psnr(d, f) for d, f in zip(decoded, frames, strict=True))

    def run() -> float:
        t0 = time.perf_counter()
        encode(frames[0])
        first = time.perf_counter() - t0
        batch = max(1, int(0.02 / max(first, 1e-6)))
        reps = 3 if first > 0.4 else min_reps
        per_frame: list[float] = []
        start = time.perf_counter()
        i = 0
        while len(per_frame) < reps or time.perf_counter() - start < seconds:
            t = time.perf_counter()
            for _ in range(batch):
                encode(frames[i % len(frames)])
                i += 1
            per_frame.append((time.perf_counter() - t) / batch)
            if len(per_frame) >= reps and first > 0.4:
                break
        return statistics.median(per_frame)

    per_frame = _in_thread(run)
    return Measurement(
        spec=spec,
        codec=codec.name,
        lossless=lossless,
        fps=1.0 / per_frame,
        bytes_per_frame=size / len(frames),
        size_pct=100.0 * size / raw,
        exact=exact,
        psnr_db=None if psnr is None else round(psnr, 2),
        releases_gil=codec.releases_gil,
    )


def gil_speedup(spec: str, frames: Sequence[Pixels], *, seconds: float = 0.4) -> float:
    """2 x T(1 thread) / T(2 threads at once) for about ``seconds`` of work, best of 3 trials."""
    frame0 = frames[0]
    codec, params = codecs.resolve(spec, dtype=frame0.dtype.name, channels=channels_of(frame0))
    t0 = time.perf_counter()
    codec.encode(frame0, params)
    n = max(2, int(seconds / max(time.perf_counter() - t0, 1e-6)))

    def work() -> None:
        for i in range(n):
            codec.encode(frames[i % len(frames)], params)

    def timed(threads: int) -> float:
        pool = [threading.Thread(target=work, name="codec-bench-gil") for _ in range(threads)]
        t = time.perf_counter()
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        return time.perf_counter() - t

    one = min(timed(1) for _ in range(3))
    two = min(timed(2) for _ in range(3))
    return 2 * one / two


def measure_all(
    frames: Sequence[Pixels],
    specs: Sequence[str] | None = None,
    *,
    seconds: float = 1.0,
    gil: bool = False,
    gil_seconds: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Measurement]:
    """Measure each spec (default: every candidate for these frames), in order."""
    frame0 = frames[0]
    chosen = (
        list(specs) if specs is not None else candidates_for(frame0.dtype.name, channels_of(frame0))
    )
    rows = []
    for spec in chosen:
        if progress is not None:
            progress(spec)
        row = measure(spec, frames, seconds=seconds)
        if gil and row.error is None:
            work = seconds / 2 if gil_seconds is None else gil_seconds
            row.speedup_2_threads = round(gil_speedup(spec, frames, seconds=work), 2)
        rows.append(row)
    return rows


# -- the ``imagelog bench`` command (rich is imported here only, when the command runs) ---------
def with_channels(frames: Sequence[Pixels], channels: int) -> list[Pixels]:
    """The frames as gray (luma), RGB or RGBA (an opaque alpha plane added)."""
    out = []
    for f in frames:
        if f.ndim == 2 or channels == 3:
            out.append(f if f.ndim == 2 or f.shape[2] == 3 else np.ascontiguousarray(f[..., :3]))
        elif channels == 1:
            luma = f[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            out.append(np.clip(np.rint(luma), 0, np.iinfo(f.dtype).max).astype(f.dtype))
        else:
            alpha = np.full((*f.shape[:2], 1), np.iinfo(f.dtype).max, f.dtype)
            out.append(np.ascontiguousarray(np.concatenate([f[..., :3], alpha], axis=2)))
    return out


def preset_names(spec: str, dtype: str) -> list[str]:
    """The presets that choose ``spec`` for frames of ``dtype``."""
    return [name for name, table in codecs.PRESETS.items() if table.get(dtype) == spec]


#: The largest frame ``imagelog bench --size`` measures (a typo of a zero would ask for GBs).
MAX_PIXELS = 200 * 10**6


def _size(text: str) -> tuple[int, int]:
    import argparse

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text}")
    if w * h > MAX_PIXELS:
        raise argparse.ArgumentTypeError(f"size {text} is over {MAX_PIXELS // 10**6} megapixels")
    return w, h


def add_parser(sub: Any) -> None:
    """Register ``imagelog bench`` on the CLI's subparsers."""
    from .cli import positive

    b = sub.add_parser(
        "bench",
        help="measure every codec on this machine: frames/s per core, size, keeps up or not",
        description="Measure every available codec with your frame size (or image) on this machine.",
    )
    b.add_argument("--size", type=_size, default=(1920, 1080), help="WIDTHxHEIGHT (1920x1080)")
    b.add_argument("--dtype", choices=("uint8", "uint16"), default="uint8")
    b.add_argument("--channels", type=int, choices=(1, 3, 4), default=None,
                   help="1 gray, 3 RGB, 4 RGBA (default: 3 for uint8, 1 for uint16)")  # fmt: skip
    b.add_argument("--image", metavar="PATH", help="measure with this image instead")
    b.add_argument("--fps", type=positive(10_000), default=30.0,
                   help="the camera rate to keep up with (30)")  # fmt: skip
    b.add_argument("--format", action="append", metavar="SPEC", dest="formats",
                   help="measure only this format spec (repeatable), e.g. png:level=1")  # fmt: skip
    b.add_argument("--seconds", type=positive(3600, zero=True), default=1.0,
                   help="timing per format (1.0; 0: one frame)")  # fmt: skip
    b.add_argument("--gil", action="store_true", help="also measure the 2-thread speed-up")
    b.add_argument("--json", action="store_true", help="JSON instead of a table")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args: Any) -> int:
    """Measure and print a table: frames/s per core and on all cores, size, keeps up or not."""
    import json

    if args.image:
        frames = frames_from_image(args.image, args.dtype)
    else:
        width, height = args.size
        frames = synthetic_frames(width, height, args.dtype)
    channels = args.channels or (1 if args.dtype == "uint16" or frames[0].ndim == 2 else 3)
    frames = with_channels(frames, channels)
    frame0 = frames[0]
    height, width = frame0.shape[:2]
    dtype = frame0.dtype.name
    cores = available_cores()
    specs = args.formats or candidates_for(dtype, channels_of(frame0))
    quiet = args.json
    if not quiet:
        from rich.console import Console

        console = Console(stderr=True)
        status = console.status("measuring")
        status.start()
    try:
        rows = measure_all(
            frames, specs, seconds=args.seconds, gil=args.gil,
            progress=None if quiet else (lambda s: status.update(f"measuring {s}")),
        )  # fmt: skip
    finally:
        if not quiet:
            status.stop()
    report = []
    for r in rows:
        all_cores = r.fps * (cores if r.releases_gil else 1)
        report.append({**r.to_dict(), "fps_all_cores": all_cores,
                       "keeps_up": all_cores >= args.fps, "presets": preset_names(r.spec, dtype)})  # fmt: skip
    if args.json:
        print(json.dumps({"width": width, "height": height, "dtype": dtype, "channels":
                          channels_of(frame0), "cores": cores, "fps": args.fps, "codecs": report},
                         indent=2))  # fmt: skip
        return 0
    from rich.table import Table

    table = Table(
        title=f"{width}x{height} {dtype} x{channels_of(frame0)} on {cores} core(s); "
        f"keeps up with {args.fps:g} fps?"
    )
    for col in ("format", "lossless", "fps/core", f"fps ({cores} cores)", "size % raw",
                "KB/frame", "GIL released", f"{args.fps:g} fps?"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("format", "lossless") else "right")
    for row in sorted(report, key=lambda x: -x["fps"]):
        if row["error"]:
            table.add_row(row["spec"], "", "error", "", "", "", "", row["error"][:40])
            continue
        name = row["spec"] + (
            f" [dim]({', '.join(row['presets'])})[/dim]" if row["presets"] else ""
        )
        lossless = "yes" if row["lossless"] else f"no ({row['psnr_db']:.1f} dB)"
        if row["lossless"] and row["exact"] is False:
            lossless = "[red]NOT EXACT[/red]"
        gil = "yes" if row["releases_gil"] else "[yellow]no[/yellow]"
        if row["speedup_2_threads"] is not None:
            gil += f" ({row['speedup_2_threads']:.2f}x)"
        keeps = "[green]yes[/green]" if row["keeps_up"] else "[red]no[/red]"
        table.add_row(name, lossless, f"{row['fps']:.1f}", f"{row['fps_all_cores']:.1f}",
                      f"{row['size_pct']:.1f}", f"{row['bytes_per_frame'] / 1000:.0f}", gil, keeps)  # fmt: skip
    from .cli import stdout_console

    stdout_console().print(table)
    return 0

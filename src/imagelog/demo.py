"""``make demo``: a simulated 30 fps camera logged for ten seconds, with a live status line.

``python -m imagelog.demo [RUN] [--seconds S] [--fps F] [--size WxH]``
"""

from __future__ import annotations

import time
from pathlib import Path

import imagelog
from imagelog.codec_bench import _size
from imagelog.samples import CameraSimulator, depth_frame


def main(argv: list[str] | None = None) -> int:
    """Run the demo session and print what to open next."""
    from imagelog.cli import _Parser, positive, run_arg

    p = _Parser(prog="python -m imagelog.demo", description=__doc__)
    p.add_argument("run", nargs="?", type=run_arg, default="runs/demo",
                   help="the run folder to write (runs/demo)")  # fmt: skip
    p.add_argument("--seconds", type=positive(24 * 3600), default=10.0, help="how long (10)")
    p.add_argument("--fps", type=positive(1000), default=30.0, help="camera frames/s (30)")
    p.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT (1280x720)")
    a = p.parse_args(argv)
    width, height = a.size
    size = f"{width}x{height}"

    from rich.console import Console
    from rich.live import Live

    console = Console()
    cam = CameraSimulator(width, height, seed=42)
    depth = depth_frame(640, 480)
    run = Path(a.run)
    console.print(f"[bold]imagelog demo[/bold]: a {size} camera at {a.fps:g} fps and a 16-bit "
                  f"depth stream at {a.fps / 3:g} fps, for {a.seconds:g} s, into {run}/")  # fmt: skip
    log = imagelog.open(
        run, format="lossless", formats={"preview": "preview"}, on_full="drop_oldest"
    )
    period = 1.0 / a.fps
    n = int(a.seconds * a.fps)
    t0 = time.perf_counter()
    worst = 0.0
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        for i in range(n):
            time.sleep(max(0.0, t0 + i * period - time.perf_counter()))
            frame = cam.frame()
            t = time.perf_counter()
            log.log(frame, source="cam1", frame_no=i, exposure_ms=8.3, labels={"line": "demo"})
            if i % 3 == 0:
                log.log(depth, source="depth", frame_no=i)
            if i % 10 == 0:
                log.log(frame, source="preview", message=f"preview of frame {i}")
            worst = max(worst, time.perf_counter() - t)
            if i % 6 == 0:
                s = log.stats()
                elapsed = time.perf_counter() - t0
                fill = 100 * s["queue_bytes"] / s["max_queue_bytes"]
                live.update(
                    f"t={elapsed:5.1f}s  logged {s['logged']:4d}  written {s['written']:4d}  "
                    f"{s['written'] / elapsed:5.1f} frames/s  queue {fill:4.1f}%  "
                    f"dropped {s['dropped']}  worst log() {worst * 1000:.2f} ms"
                )
    log.close()
    s = log.stats()
    console.print(
        f"\n[bold green]done[/bold green]: {s['written']} images written "
        f"({s['bytes_written'] / 1e6:.1f} MB), {s['dropped']} dropped, {s['failed']} failed."
    )
    for src, c in sorted(s["by_source"].items()):
        console.print(f"  {src:8s} {c['written']:4d} images  {c['bytes_written'] / 1e6:7.1f} MB")
    console.print("\nNext, try:")
    for cmd in (
        f".venv/bin/imagelog stats {run}",
        f".venv/bin/imagelog ls {run} -n 10",
        f".venv/bin/imagelog show {run} <id> --open /tmp",
        f".venv/bin/imagelog verify {run}",
        f".venv/bin/imagelog bench --size {size} --fps {a.fps:g}",
        f"jq -c '{{id: .image.id, source: .image.source, path: .file.path}}' {run}/index/*.jsonl | head",
        f"ls {run}/images/*/*/*/*/",
    ):
        console.print(f"  [cyan]{cmd}[/cyan]")
    console.print("\nLook at what was logged (timeline, thumbnails, frames; Ctrl-C stops):")
    console.print(f"  [bold cyan].venv/bin/imagelog view {run}[/bold cyan]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

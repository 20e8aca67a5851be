"""``select=`` (#22): what deciding costs the caller, and what ``select="changed"`` keeps.

``python -m bench.select [--quick]``. Decision cost: ``Selector.decide`` with ``changed`` on
camera frames from the bundled photos (a new thumbnail and a comparison per frame), and the
whole ``log()`` of a frame that is not stored, at 128x128, 640x480 and 1920x1080. Kept frames
and missed events: the camera sequences of the tests (tests/select_scenes.py: sensor noise,
lighting drift, a light switched on, objects entering and leaving), through ``log()``. Never
asserts a timing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

SIZES = ((128, 128), (640, 480), (1920, 1080))


def decision_cost(width: int, height: int, n: int) -> dict[str, Any]:
    """p50/p99 of one decision (µs), and of ``log()`` for a frame not stored."""
    import imagelog
    from imagelog._selector import Selector
    from imagelog.samples import CameraSimulator
    from imagelog.select import parse

    cam = CameraSimulator(width, height, seed=1)
    frames = [cam.frame() for _ in range(4)]
    policy = parse("changed")
    sel = Selector(None)
    sel.decide(policy, "cam", frames[0], {}, 0, 0)  # the reference
    times = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        sel.decide(policy, "cam", frames[0], {}, i, i)
        times.append(time.perf_counter_ns() - t0)
    log_times = []
    with tempfile.TemporaryDirectory() as tmp, imagelog.open(tmp, select="changed") as log:
        log.log(frames[0], source="cam")
        for _ in range(n):
            t0 = time.perf_counter_ns()
            log.log(frames[0], source="cam")
            log_times.append(time.perf_counter_ns() - t0)
        skipped = log.stats()["not_selected"]
    return {
        "size": f"{width}x{height}",
        "decide_p50_us": _q(times, 0.5),
        "decide_p99_us": _q(times, 0.99),
        "log_p50_us": _q(log_times, 0.5),
        "log_p99_us": _q(log_times, 0.99),
        "not_selected": skipped,
        "frames": n,
    }


def _q(ns: list[int], q: float) -> float:
    s = sorted(ns)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000


def kept(policy: str = "changed") -> list[dict[str, Any]]:
    """Each test sequence through ``log()``: frames kept, events missed, frames kept after the
    light switched on."""
    from tests.select_scenes import scenes

    import imagelog

    out = []
    for scene in scenes():
        with tempfile.TemporaryDirectory() as tmp:
            with imagelog.open(tmp, select=policy) as log:
                for i, frame in enumerate(scene.frames()):
                    log.log(frame, source="cam", captured_at=1_764_000_000 + i / 10, i=i)
            stored = {r["meta"]["i"] for r in imagelog.read(tmp).records()}
        missed = [e.name for e in scene.events if not {e.start, e.start + 1} & stored]
        out.append({
            "scene": scene.name,
            "frames": scene.n,
            "kept": len(stored),
            "events": len(scene.events),
            "missed": missed,
            "kept_after_step": (  # the light's frames: after it, and not an event's
                None if scene.step_at is None
                else len([i for i in stored if scene.step_at <= i and not any(
                    e.start <= i <= e.start + 1 for e in scene.events)])
            ),
        })  # fmt: skip
    return out


def run(quick: bool) -> dict[str, Any]:
    """Every figure of this section."""
    n = 300 if quick else 2000
    return {
        "cost": [decision_cost(w, h, n) for w, h in SIZES],
        "scenes": kept(),
    }


def table(res: dict[str, Any]) -> str:
    """Markdown tables."""
    rows = [
        "## select=: decision cost and what `changed` keeps",
        "",
        "| frame | decide() p50 / p99 | log() of a frame not stored p50 / p99 |",
        "|---|---:|---:|",
    ]
    for r in res["cost"]:
        rows.append(
            f"| {r['size']} | {r['decide_p50_us']:.0f} / {r['decide_p99_us']:.0f} µs | "
            f"{r['log_p50_us']:.0f} / {r['log_p99_us']:.0f} µs |"
        )
    rows += [
        "",
        '| sequence (`select="changed"`) | frames | kept | labelled events | missed | kept after the light |',
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in res["scenes"]:
        after = "" if s["kept_after_step"] is None else str(s["kept_after_step"])
        rows.append(
            f"| {s['scene']} | {s['frames']} | {s['kept']} ({100 * s['kept'] / s['frames']:.1f}%) "
            f"| {s['events']} | {len(s['missed'])} | {after} |"
        )
    return "\n".join(rows)


def main() -> None:
    """``python -m bench.select [--quick]``."""
    p = argparse.ArgumentParser(prog="python -m bench.select")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    res = run(a.quick)
    print(table(res))


if __name__ == "__main__":
    main()

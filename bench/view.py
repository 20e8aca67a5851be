"""``imagelog view`` at 100,000 and 1,000,000 records: first thumbnails, server RSS, filter latency.

Each run is made synthetically (a few real images, many index lines pointing at them) and
served by ``imagelog view`` in its own process, so its RSS is the server's alone. Time to the
first painted thumbnails is measured in headless Chromium when it is installed (else over HTTP:
the first page of frames and its first 12 thumbnails). Measures; never asserts.

``python -m bench.view [--quick] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

FILTERS = [
    ("all frames", ""),
    ("source=cam1", "source=cam1"),
    ("meta score>0.9", "meta=score%3E0.9"),
    ("label line=2 + meta shift=night", "label=line%3D2&meta=shift%3Dnight"),
    ("message text", "q=nothing-matches"),
]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as resp:
        data: bytes = resp.read()
        return data


def _serve(run: Path, cache: Path) -> tuple[subprocess.Popen[str], str]:
    exe = Path(sys.executable).with_name("imagelog")
    env = {**os.environ, "IMAGELOG_CACHE_DIR": str(cache)}
    proc = subprocess.Popen([str(exe), "view", str(run), "--no-browser"], stdout=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("imagelog view exited")
        m = re.search(r"http://\S+\?token=\S+", line)
        if m:
            return proc, m.group(0)


def _first_paint(url: str) -> tuple[float, str]:
    chromium = shutil.which("chromium")
    t0 = time.perf_counter()
    if chromium:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            t0 = time.perf_counter()
            page.goto(url)
            page.wait_for_function(
                "document.querySelectorAll(\".tile img[data-loaded='1']\").length >= 12",
                timeout=600_000,
            )
            took = time.perf_counter() - t0
            browser.close()
        return took, "Chromium"
    base, token = url.split("/?")
    frames = json.loads(_get(f"{base}/api/frames?limit=12&{token}"))["frames"]
    for f in frames:
        _get(f"{base}/thumb/{f['id']}?{token}")
    return time.perf_counter() - t0, "HTTP"


def _rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def measure(records: int, workdir: Path) -> dict[str, Any]:
    """Make (or reuse) a run of ``records`` lines, serve it, measure."""
    from imagelog.viewer._synth import make_run

    run = workdir / f"run{records}"
    t = time.perf_counter()
    if not (run / "index").is_dir():
        print(f"  view: making a {records:,}-record run ...", file=sys.stderr, flush=True)
        make_run(run, records=records)
    made = time.perf_counter() - t
    cache = Path(tempfile.mkdtemp(prefix="imagelog-bench-view-"))
    proc, url = _serve(run, cache)
    rss_peak = 0.0
    try:
        paint, how = _first_paint(url)
        base, token = url.split("/?")
        t0 = time.perf_counter()
        while json.loads(_get(f"{base}/api/summary?{token}"))["loading"]:
            rss_peak = max(rss_peak, _rss_mb(proc.pid))
            time.sleep(0.2)
        loaded = time.perf_counter() - t0 + paint
        rss_loaded = _rss_mb(proc.pid)
        latencies = []
        for name, query in FILTERS:
            t = time.perf_counter()
            n = json.loads(_get(f"{base}/api/count?{query}&{token}"))["count"]
            _get(f"{base}/api/frames?{query}&offset=0&limit=200&{token}")
            first = time.perf_counter() - t
            t = time.perf_counter()
            _get(f"{base}/api/frames?{query}&offset={max(0, n - 200)}&limit=200&total={n}&{token}")
            last = time.perf_counter() - t
            latencies.append({"filter": name, "matches": n, "first_page_s": first,
                              "last_page_s": last})  # fmt: skip
            rss_peak = max(rss_peak, _rss_mb(proc.pid))
        rss_peak = max(rss_peak, rss_loaded, _rss_mb(proc.pid))
    finally:
        proc.terminate()
        proc.wait(60)
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(cache, ignore_errors=True)
    return {
        "records": records,
        "make_run_s": made,
        "first_paint_s": paint,
        "first_paint_by": how,
        "index_loaded_s": loaded,
        "rss_loaded_mb": rss_loaded,
        "rss_peak_mb": rss_peak,
        "filters": latencies,
    }


def run(quick: bool, keep: str | None = None) -> list[dict[str, Any]]:
    """100,000 records (and 1,000,000 unless ``quick``)."""
    workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="imagelog-bench-runs-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return [measure(n, workdir) for n in ((100_000,) if quick else (100_000, 1_000_000))]
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per run size and filter."""
    rows = [
        "## imagelog view\n",
        "| records | first thumbnails painted | whole index read | server RSS (loaded / peak) |",
        "|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(f"| {r['records']:,} | {r['first_paint_s']:.2f} s ({r['first_paint_by']}) | "
                    f"{r['index_loaded_s']:.1f} s | {r['rss_loaded_mb']:.0f} / "
                    f"{r['rss_peak_mb']:.0f} MB |")  # fmt: skip
    rows += ["", "| records | filter | matches | count + first 200 | last 200 |",
             "|---:|---|---:|---:|---:|"]  # fmt: skip
    for r in results:
        for f in r["filters"]:
            rows.append(f"| {r['records']:,} | {f['filter']} | {f['matches']:,} | "
                        f"{f['first_page_s'] * 1000:.0f} ms | {f['last_page_s'] * 1000:.0f} ms |")  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run and print the table."""
    p = argparse.ArgumentParser(prog="python -m bench.view", description=__doc__)
    p.add_argument("--quick", action="store_true", help="100,000 records only")
    p.add_argument("--keep", help="make the runs in DIR and keep them (reused next time)")
    a = p.parse_args(argv)
    print(table(run(a.quick, a.keep)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

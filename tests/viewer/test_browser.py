"""The viewer in headless system Chromium: a 100,000-record run, filters, frames, live follow.

Waits are conditions with generous deadlines, never sleeps; durations are printed, not asserted.
Screenshots go to the test's tmp_path (``VIEW_SCREENSHOTS_TO=docs/img`` makes the README ones).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from imagelog.index import parse_segment, segment_keys
from imagelog.run import read
from imagelog.viewer import Viewer

from .conftest import BIG

pytestmark = pytest.mark.browser

WAIT = 60_000  # ms: generous, for a loaded CI machine
WRITER = Path(__file__).with_name("writer_proc.py")


@pytest.fixture(name="expected", scope="session")
def _expected(big_run: Path) -> list[dict[str, Any]]:
    """The run's stored frames as the test reads them itself (json, no viewer code), in page order."""
    store = read(big_run).store
    out = []
    for key in segment_keys(store):
        for rec in parse_segment(store.get(key), key=key):
            if rec["event"]["action"] == "logged":
                out.append({"id": rec["image"]["id"], "ts": rec["@timestamp"],
                            "source": rec["image"]["source"], "meta": rec["meta"]})  # fmt: skip
    out.sort(key=lambda r: (r["ts"], r["id"]))
    return out


def shot(page: Any, path: Path) -> None:
    """A small screenshot: PNG with a 128-colour palette."""
    from PIL import Image

    page.screenshot(path=str(path))
    with Image.open(path) as im:
        im.convert("RGB").quantize(colors=128).save(path, optimize=True)


def status_count(page: Any) -> int:
    return int(page.get_attribute("#status", "data-count") or -1)


def wait_count(page: Any, n: int) -> None:
    page.wait_for_function(
        "n => document.querySelector('#status').dataset.count == String(n)", arg=n, timeout=WAIT
    )


def wait_thumbs(page: Any, n: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll(\".tile img[data-loaded='1']\").length >= n",
        arg=n,
        timeout=WAIT,
    )


def visible_tiles(page: Any) -> list[dict[str, str]]:
    return list(
        page.eval_on_selector_all(
            ".tile",
            "els => els.filter(e => e.style.visibility !== 'hidden' && e.dataset.id)"
            ".map(e => ({id: e.dataset.id, source: e.dataset.source, index: e.dataset.index}))",
        )
    )


def test_first_thumbnails_of_100k_frames(
    page: Any, big_viewer: Viewer, expected: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The grid paints its first thumbnails and loads only what is on screen."""
    thumbs: list[str] = []
    page.on("request", lambda r: thumbs.append(r.url) if "/thumb/" in r.url else None)
    t0 = time.perf_counter()
    page.goto(big_viewer.url)
    wait_thumbs(page, 12)
    print(f"\nfirst 12 thumbnails painted {time.perf_counter() - t0:.2f} s after opening")
    wait_count(page, len(expected))
    assert len(expected) > BIG * 0.99
    tiles = page.locator(".tile").count()
    assert 0 < tiles < 400, f"{tiles} tiles in the page: the grid is not virtualised"
    assert len(thumbs) < 400, f"{len(thumbs)} thumbnails requested for one screen"
    assert [t["id"] for t in visible_tiles(page)[:5]] == [r["id"] for r in expected[:5]]
    page.wait_for_selector("#timeline .tl-row[data-source='cam1'] canvas", timeout=WAIT)
    shot(page, tmp_path / "grid.png")


def test_filter_by_source_and_meta_kept_in_url(
    page: Any, big_viewer: Viewer, expected: list[dict[str, Any]]
) -> None:
    """Source chips and a meta expression filter on the server; the URL reopens the same view."""
    page.goto(big_viewer.url)
    wait_count(page, len(expected))
    page.click("#sources .chip[data-source='cam1']")
    cam1 = [r for r in expected if r["source"] == "cam1"]
    wait_count(page, len(cam1))
    wait_thumbs(page, 6)
    assert {t["source"] for t in visible_tiles(page)} == {"cam1"}
    page.fill("input[name=meta]", "score>0.9 shift=night")
    page.press("input[name=meta]", "Enter")
    hits = [
        r for r in cam1 if r["meta"].get("score", 0) > 0.9 and r["meta"].get("shift") == "night"
    ]
    assert 0 < len(hits) < len(cam1)
    wait_count(page, len(hits))
    page.wait_for_function(
        "id => [...document.querySelectorAll('.tile')].some(t => t.dataset.id === id)",
        arg=hits[0]["id"],
        timeout=WAIT,
    )
    url = page.url
    assert "source=cam1" in url and "meta=score%3E0.9" in url
    page.goto(url)  # a link reopens the same view
    wait_count(page, len(hits))
    assert page.input_value("input[name=meta]") == "score>0.9 shift=night"


def test_scroll_to_the_end(page: Any, big_viewer: Viewer, expected: list[dict[str, Any]]) -> None:
    """Scrolling to the bottom shows the last frame, loaded on demand."""
    page.goto(big_viewer.url)
    wait_count(page, len(expected))
    page.eval_on_selector("#grid", "g => { g.scrollTop = g.scrollHeight; }")
    last = len(expected) - 1
    page.wait_for_selector(f".tile[data-index='{last}'] img[data-loaded='1']", timeout=WAIT)
    assert page.get_attribute(f".tile[data-index='{last}']", "data-id") == expected[-1]["id"]
    assert page.locator(".tile").count() < 400


def test_timeline_drag_and_jump(
    page: Any, big_viewer: Viewer, expected: list[dict[str, Any]]
) -> None:
    """Dragging across a timeline strip filters to that range; "jump" scrolls to a time."""
    import datetime as dt

    page.goto(big_viewer.url)
    wait_count(page, len(expected))
    target = expected[60_000]
    page.fill("#jump", target["ts"])
    page.click("#jumpgo")
    page.wait_for_selector(f".tile[data-id='{target['id']}'] img[data-loaded='1']", timeout=WAIT)
    box = page.locator("#timeline .tl-row[data-source='cam1'] .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=5)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('input[name=until]').value", timeout=WAIT)
    since, until = (
        dt.datetime.fromisoformat(page.input_value(f"input[name={k}]")) for k in ("since", "until")
    )
    inside = [r for r in expected if since <= dt.datetime.fromisoformat(r["ts"]) < until]
    assert 0 < len(inside) < len(expected)
    wait_count(page, len(inside))
    assert "since=" in page.url and "until=" in page.url


def test_frame_arrows_and_compare(
    page: Any, big_viewer: Viewer, expected: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Open a 16-bit frame, step with the arrow keys in its source, compare two times."""
    depth = [r for r in expected if r["source"] == "depth"]
    page.goto(big_viewer.url + "&source=depth")
    wait_count(page, len(depth))
    page.click(f".tile[data-id='{depth[0]['id']}']")
    pane0 = "[data-testid=pane-0]"
    page.wait_for_selector(
        f"{pane0}[data-id='{depth[0]['id']}'] img[data-loaded='1']", timeout=WAIT
    )
    page.wait_for_function(  # the side panel renders after the record arrives: wait for it
        "id => document.querySelectorAll('[data-testid=window] input[type=range]').length === 2"
        " && (document.querySelector('[data-testid=record]')?.innerText || '').includes(id)",
        arg=depth[0]["id"],
        timeout=WAIT,
    )  # two window inputs: a 16-bit frame
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(
        f"{pane0}[data-id='{depth[1]['id']}'] img[data-loaded='1']", timeout=WAIT
    )
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(f"{pane0}[data-id='{depth[2]['id']}']", timeout=WAIT)
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector(f"{pane0}[data-id='{depth[1]['id']}']", timeout=WAIT)
    # the window: a narrower one asks the server for new pixels
    src = page.get_attribute(f"{pane0} img", "src") or ""
    page.eval_on_selector(
        "[data-testid=window] input[name=hi]",
        "e => { e.value = e.min; e.dispatchEvent(new Event('input')); }",
    )
    page.wait_for_function(
        "s => document.querySelector('[data-testid=pane-0] img').getAttribute('src') !== s",
        arg=src,
        timeout=WAIT,
    )
    # compare: a second pane, stepped on its own
    page.click("[data-testid=compare]")
    pane1 = "[data-testid=pane-1]"
    page.wait_for_selector(
        f"{pane1}[data-id='{depth[1]['id']}'] img[data-loaded='1']", timeout=WAIT
    )
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.wait_for_selector(
        f"{pane1}[data-id='{depth[4]['id']}'] img[data-loaded='1']", timeout=WAIT
    )
    assert page.get_attribute(pane0, "data-id") == depth[1]["id"]
    shot(page, tmp_path / "compare.png")
    url = page.url
    assert f"frame={depth[1]['id']}" in url and f"compare={depth[4]['id']}" in url
    page.goto(url)  # the link reopens both panes
    page.wait_for_selector(
        f"{pane1}[data-id='{depth[4]['id']}'] img[data-loaded='1']", timeout=WAIT
    )
    page.keyboard.press("Escape")
    page.wait_for_selector("[data-testid=frame]", state="hidden", timeout=WAIT)


def test_same_moment_in_another_source(
    page: Any, big_viewer: Viewer, expected: list[dict[str, Any]]
) -> None:
    """The compare pane can show another source at the same moment."""
    cam1 = next(r for r in expected[100:] if r["source"] == "cam1")
    page.goto(big_viewer.url + f"&frame={cam1['id']}")
    page.wait_for_selector(f"[data-testid=pane-0][data-id='{cam1['id']}']", timeout=WAIT)
    page.select_option("[data-testid=same-moment]", "thermal")
    thermal = next(r for r in expected if r["source"] == "thermal" and r["ts"] >= cam1["ts"])
    page.wait_for_selector(f"[data-testid=pane-1][data-id='{thermal['id']}']", timeout=WAIT)


@pytest.fixture(name="live_run")
def _live_run(tmp_path: Path) -> Iterator[tuple[Path, Path, subprocess.Popen[str]]]:
    run, stop = tmp_path / "live", tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, str(WRITER), str(run), "0.1", str(stop)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("logged 0")
    try:
        yield run, stop, proc
    finally:
        stop.touch()
        proc.wait(60)
        proc.stdout.close()


def test_follow_a_live_run(
    page: Any, live_run: tuple[Path, Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    """Frames a writer process adds appear in the open page, without a reload."""
    run, _, _ = live_run
    with Viewer(str(run), cache_dir=tmp_path / "cache", poll=0.1) as viewer:
        page.goto(viewer.url + "&follow=1")
        wait_thumbs(page, 1)
        page.evaluate("window.__sameDocument = true")
        first = status_count(page)
        t0 = time.perf_counter()
        page.wait_for_function(
            "n => +document.querySelector('#status').dataset.count >= n",
            arg=first + 5,
            timeout=WAIT,
        )
        print(f"\n5 new frames shown {time.perf_counter() - t0:.2f} s later")
        n = status_count(page)
        page.wait_for_selector(f".tile[data-index='{n - 1}'] img[data-loaded='1']", timeout=WAIT)
        assert page.evaluate("window.__sameDocument") is True
        shot(page, tmp_path / "live.png")


def test_open_a_killed_run(page: Any, tmp_path: Path) -> None:
    """A run whose writer was killed, with a torn last line, opens: whole lines shown, no spinner."""
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(WRITER), str(run), "0", "-"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    while not proc.stdout.readline().startswith("logged 20"):
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    proc.stdout.close()
    seg = sorted((run / "index").glob("*.jsonl"))[-1]
    whole = [json.loads(x) for x in seg.read_bytes().splitlines()]
    with open(seg, "ab") as fh:  # the writer died in the middle of its next line
        fh.write(json.dumps(whole[-1]).encode()[:57])
    with Viewer(str(run), cache_dir=tmp_path / "cache") as viewer:
        page.goto(viewer.url)
        logged = sum(1 for r in whole if r["event"]["action"] == "logged")
        wait_count(page, logged)
        page.wait_for_function(
            "() => !document.querySelector('#status').textContent.includes('reading')",
            timeout=WAIT,
        )
        wait_thumbs(page, min(logged, 6))
        assert page.is_hidden("#error")


def test_readme_screenshots(
    page: Any, big_viewer: Viewer, expected: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The README's screenshots: grid and compare render (``make docs-img`` writes docs/img)."""
    out = Path(os.environ.get("VIEW_SCREENSHOTS_TO") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1100, "height": 640})
    page.goto(big_viewer.url)
    wait_count(page, len(expected))
    wait_thumbs(page, 18)
    page.wait_for_selector("#timeline .tl-row canvas", timeout=WAIT)
    shot(page, out / "viewer-grid.png")
    depth = [r for r in expected if r["source"] == "depth"]
    page.goto(big_viewer.url + f"&frame={depth[0]['id']}&compare={depth[40]['id']}")
    page.wait_for_selector("[data-testid=pane-1] img[data-loaded='1']", timeout=WAIT)
    page.wait_for_selector("[data-testid=pane-0] img[data-loaded='1']", timeout=WAIT)
    shot(page, out / "viewer-compare.png")
    for name in ("viewer-grid.png", "viewer-compare.png"):
        with PILImage.open(out / name) as im:
            assert im.size == (1100, 640) and len(im.getcolors(256) or []) > 8  # not a blank page

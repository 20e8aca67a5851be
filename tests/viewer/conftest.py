"""Viewer fixtures: a 100,000-record run, a server in a thread, headless system Chromium."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CI, require

from imagelog.viewer import Viewer
from imagelog.viewer._synth import make_run

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
BIG = 100_000


def _viewer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("imagelog-view")]


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """The logger's threads must not outlive a test; a shared viewer's are checked at its end."""
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [t.name for t in threading.enumerate() if t.name.startswith("imagelog-")
                  and not t.name.startswith(("imagelog-view", "imagelog-thumb"))
                  and t.ident not in before]  # fmt: skip
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"imagelog threads still alive after the test: {leaked}"


def data_dir() -> Path:
    """The real sample images (../shared/data)."""
    require(DATA.is_dir(), f"sample images not found at {DATA}")
    return DATA


@pytest.fixture(name="big_run", scope="session")
def _big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100,000 index lines over a few real image files, in four sources."""
    return make_run(tmp_path_factory.mktemp("big") / "run", records=BIG, data_dir=data_dir())


@pytest.fixture(name="big_viewer", scope="session")
def _big_viewer(big_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Viewer]:
    viewer = Viewer(str(big_run), cache_dir=tmp_path_factory.mktemp("cache"))
    with viewer:
        yield viewer
    deadline = time.monotonic() + 10
    while _viewer_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _viewer_threads(), f"viewer threads still alive: {_viewer_threads()}"


@pytest.fixture(name="browser", scope="session")
def _browser() -> Iterator[Any]:
    """Headless system Chromium through Playwright (never a downloaded browser)."""
    require(os.path.exists(CHROMIUM), "chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(name="page")
def _page(browser: Any) -> Iterator[Any]:
    """A fresh page; any JavaScript error fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


__all__ = ["BIG", "CI", "data_dir"]

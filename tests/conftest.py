"""Shared fixtures: run folders, camera-like frames, and the no-leaked-threads check."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imagelog.samples import CameraSimulator, depth_frame

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, why: str) -> None:
    """Skip when infrastructure is missing, but fail under CI=true (CI must run everything)."""
    if not condition:
        if CI:
            pytest.fail(f"required under CI=true: {why}")
        pytest.skip(why)


@pytest.fixture(name="run_dir")
def _run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture(name="camera", scope="session")
def _camera() -> CameraSimulator:
    return CameraSimulator(320, 240, seed=7)


@pytest.fixture(name="rgb")
def _rgb(camera: CameraSimulator) -> np.ndarray[Any, Any]:
    return camera.frame()


@pytest.fixture(name="depth16", scope="session")
def _depth16() -> np.ndarray[Any, Any]:
    return depth_frame(320, 240)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [t.name for t in threading.enumerate()
                  if t.name.startswith("imagelog-") and t.ident not in before]  # fmt: skip
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"imagelog threads still alive after the test: {leaked}"


@pytest.fixture(autouse=True)
def _no_env_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("IMAGELOG_"):
            monkeypatch.delenv(key)
    # strict mode: a background error fails the test at flush()/close() instead of being counted
    monkeypatch.setenv("IMAGELOG_STRICT", "1")

"""Shared fixtures: run folders, camera-like frames, and the no-leaked-threads check."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from imagelog.samples import CameraSimulator, depth_frame

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# No Hypothesis deadline nor too-slow health check: on a shared 2-core machine an example's run
# time says nothing about the code (speed is the benchmark suite's business).
settings.register_profile("imagelog", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("imagelog")

#: how long a test waits for a condition that should hold at once: only a hang reaches it.
PATIENCE = 120.0
#: The start of the clock tests drive by hand.
START_NS = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z


class FakeClock:
    """Unix time in ns that moves only when a test ticks it."""

    def __init__(self, start_ns: int = START_NS) -> None:
        self.ns = start_ns

    def __call__(self) -> int:
        return self.ns

    def tick(self, seconds: float) -> None:
        """Move time forward."""
        self.ns += int(seconds * 1e9)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` if it never does (a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def returns(fn: Callable[[], object], what: str, timeout: float = PATIENCE) -> None:
    """Call ``fn`` in a thread and fail naming ``what`` if it has not returned by ``timeout``
    (a hang; how long it took is not asserted). Its exception, if any, is re-raised here."""
    errors: list[BaseException] = []

    def call() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=call, name="test-returns", daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{what} did not return (hung)"
    if errors:
        raise errors[0]


def kill9_when_ready(argv: list[str], after_s: float) -> subprocess.Popen[str]:
    """Start ``argv`` (a child that prints ``ready`` once it is logging), let it run up to
    ``after_s`` seconds more, then ``kill -9`` it; return the ended process."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        try:
            proc.wait(timeout=after_s)
        except subprocess.TimeoutExpired:
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return proc


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
    deadline = time.monotonic() + PATIENCE
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

"""Fixtures for the storage tests: an injected clock, small real filesystems (tmpfs), run sizes.

Tests marked ``tmpfs`` mount a tmpfs of a few MB. As root they mount it here and unmount it in
teardown; otherwise the test body runs again in a subprocess under ``unshare -rm`` (a user and
mount namespace, where the mount dies with the process). Without either they skip, except under
CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from imagelog.logger import ImageLog
from imagelog.settings import Settings
from imagelog.stores import make_store

from ..conftest import FakeClock

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
IN_USERNS = "PYTEST_IMAGELOG_USERNS"  # not IMAGELOG_*: the root conftest clears those


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="open_log")
def _open_log(clock: FakeClock) -> Callable[..., ImageLog]:
    """``open_log(path, **settings)``: ``imagelog.open`` with the test's clock."""

    def make(path: Path, **settings: Any) -> ImageLog:
        return ImageLog(make_store(path), Settings.from_kwargs(**settings), clock=clock)

    return make


@pytest.fixture(name="run_bytes")
def _run_bytes() -> Callable[[Path], int]:
    """The bytes retention counts: every file under images/ and index/."""

    def size(run: Path) -> int:
        total = 0
        for part in ("images", "index"):
            for dirpath, _, names in os.walk(run / part):
                total += sum((Path(dirpath) / n).stat().st_size for n in names)
        return total

    return size


def _can_mount() -> bool:
    if os.environ.get("PYTEST_IMAGELOG_FORCE_USERNS") and not os.environ.get(IN_USERNS):
        return False  # exercise the user-namespace path as root
    return os.geteuid() == 0 and shutil.which("mount") is not None


def _userns_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture(name="tmpfs")
def _tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs("4m")`` mounts a tmpfs of that size and returns its folder; unmounted in teardown."""
    mounted: list[Path] = []

    def mount(size: str = "4m") -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            if CI:
                pytest.fail(f"required under CI=true: mount tmpfs: {done.stderr}")
            pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        done = subprocess.run(["umount", "-R", str(where)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-R", "-l", str(where)], capture_output=True, check=False)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a ``tmpfs`` test in a user namespace when this process cannot mount."""
    if pyfuncitem.get_closest_marker("tmpfs") is None or _can_mount() or os.environ.get(IN_USERNS):
        return None
    if not _userns_works():
        why = "tmpfs tests need root or user namespaces (unshare -rm)"
        if CI:
            pytest.fail(f"required under CI=true: {why}")
        pytest.skip(why)
    root = Path(str(pyfuncitem.config.rootpath))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        cmd = ["unshare", "-rm", sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               f"--junitxml={report}", pyfuncitem.nodeid]  # fmt: skip
        done = subprocess.run(cmd, cwd=root, env={**os.environ, IN_USERNS: "1"},
                              capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"in a user namespace:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
        outcome = inner_outcome(report)
    if outcome != "passed":  # an inner skip is a skip here (a failure under CI=true), never a pass
        why = f"in a user namespace: {outcome}"
        if CI:
            pytest.fail(f"required under CI=true: {why}")
        pytest.skip(why)
    return True


def inner_outcome(junit_xml: Path) -> str:
    """``"passed"`` if the report holds exactly one test that passed, else what happened."""
    cases = ElementTree.parse(junit_xml).getroot().findall(".//testcase")
    if len(cases) != 1:
        return f"{len(cases)} tests ran, expected 1"
    for kind in ("skipped", "failure", "error"):
        found = cases[0].find(kind)
        if found is not None:
            return f"{kind}: {found.get('message', '')}"
    return "passed"

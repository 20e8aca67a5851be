"""Retention tiers on s3:// (SeaweedFS): the 4-step ladder and kill -9 during a pass."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bench.seaweed import SeaweedFS
from tests.test_tiers import CHILD, DAY, LADDER, T0, N, as_of, make_run

import imagelog
from imagelog import audit
from imagelog.stores import make_store
from imagelog.tiers import ladders_of, run_pass

pytestmark = pytest.mark.s3


def _upload(local: Path, url: str, opts: dict[str, Any]) -> None:
    """The same run under an s3:// prefix, object by object."""
    store = make_store(url, create=True, storage_options=opts)
    try:
        for path in sorted(local.rglob("*")):
            if path.is_file():
                store.put(path.relative_to(local).as_posix(), path.read_bytes())
    finally:
        store.close()


def _state(url: str, opts: dict[str, Any]) -> list[tuple[str, str, int]]:
    recs = imagelog.read(url, storage_options=opts).records()
    return [(r["image"]["id"], r["image"]["format"], r["image"]["width"]) for r in recs]


def _check(url: str, opts: dict[str, Any]) -> list[dict[str, Any]]:
    run = imagelog.read(url, storage_options=opts)
    recs = list(run.records())
    ids = [r["image"]["id"] for r in recs]
    assert len(ids) == len(set(ids))
    for r in recs:
        assert run.load(r).shape[:2] == (r["image"]["height"], r["image"]["width"])
    report = audit.verify(run, sample=1.0)
    assert not report.damaged, report.findings
    assert not report.of("orphan"), report.of("orphan")
    return recs


def test_the_ladder_on_s3(tmp_path: Path, s3_url: str, opts: dict[str, Any]) -> None:
    local = tmp_path / "run"
    ids = make_run(str(local))
    _upload(local, s3_url, opts)
    store = make_store(s3_url, storage_options=opts)
    ladders = ladders_of(LADDER)
    run_pass(store, ladders, now_ns=T0 + 2 * DAY)
    recs = _check(s3_url, opts)
    assert [r["image"]["id"] for r in recs] == ids
    assert {r["image"]["format"] for r in recs if r["image"]["id"] != ids[3]} == {"jpeg"}
    run_pass(store, ladders, now_ns=T0 + 8 * DAY)
    kept = [r["image"]["id"] for r in _check(s3_url, opts)]
    assert len(kept) == N // 5 and ids[12] in kept and ids[3] in kept
    run_pass(store, ladders, now_ns=T0 + 31 * DAY)
    recs = _check(s3_url, opts)
    assert {(r["image"]["format"], r["image"]["width"]) for r in recs} == {
        ("jpeg", 64),
        ("jxl", 320),
    }
    run_pass(store, ladders, now_ns=T0 + 366 * DAY)
    assert [r["image"]["id"] for r in _check(s3_url, opts)] == [ids[3]]
    store.close()


def test_kill9_during_a_pass_on_s3(tmp_path: Path, seaweed: SeaweedFS, s3_url: str,
                                   opts: dict[str, Any]) -> None:  # fmt: skip
    """20 trials: killed anywhere in a pass, the run on s3 has each frame once and readable
    (or tombstoned); resumed, it ends as an uninterrupted pass leaves it."""
    local = tmp_path / "run"
    make_run(str(local), n=20)
    env = {**os.environ, **seaweed.env(), "PYTHONPATH": os.pathsep.join(sys.path),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}  # fmt: skip

    def start(url: str, days: float) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, url, as_of(days)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        return proc

    def finish(proc: subprocess.Popen[bytes]) -> int:
        rc = proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        return rc

    midway = 0
    rng = random.Random(3)
    for days, trials in ((2, 10), (31, 10)):
        ref = f"{s3_url}-ref{days}"
        _upload(local, ref, opts)
        before = _state(ref, opts)
        proc = start(ref, days)
        t = time.monotonic()
        assert finish(proc) == 0
        whole = time.monotonic() - t
        want = _state(ref, opts)
        ids = {i for i, _, _ in before}
        for trial in range(trials):
            url = f"{s3_url}-{days}-{trial}"
            _upload(local, url, opts)
            proc = start(url, days)
            time.sleep(rng.uniform(0, whole))
            proc.send_signal(signal.SIGKILL)
            finish(proc)
            now = _state(url, opts)
            midway += now not in (want, before)
            present = [i for i, _, _ in now]
            assert len(present) == len(set(present)), (days, trial)
            events = imagelog.read(url, storage_options=opts).records(include_events=True)
            gone = {i for e in events if e["event"]["action"] in ("thinned", "purged")
                    for i in (e["imagelog"].get("thinned") or e["imagelog"].get("purge") or {})
                    .get("ids", [])}  # fmt: skip
            assert set(present) | gone == ids, (days, trial)
            run = imagelog.read(url, storage_options=opts)
            for r in run.records():
                run.load(r)
            assert finish(start(url, days)) == 0  # resumed
            _check(url, opts)
            assert _state(url, opts) == want, (days, trial)
    assert midway, "no kill landed inside a pass"

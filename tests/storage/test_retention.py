"""Retention: quotas over thousands of frames, age limits, keep rules, purge records, the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import imagelog
from imagelog import cli
from imagelog.audit import verify
from imagelog.logger import ImageLog
from imagelog.samples import CameraSimulator

OpenLog = Callable[..., ImageLog]


@pytest.fixture(name="tiny")
def _tiny() -> CameraSimulator:
    return CameraSimulator(32, 24, seed=3)


def _events(run_dir: Path, action: str = "purged") -> list[dict[str, Any]]:
    recs = imagelog.read(run_dir).records(include_events=True)
    return [r for r in recs if r["event"]["action"] == action]


def _hour_sizes(run_dir: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in (run_dir / "images").rglob("*"):
        if path.is_file():
            y, m, d, h = path.relative_to(run_dir / "images").parts[:4]
            sizes[f"{y}-{m}-{d}T{h}"] = sizes.get(f"{y}-{m}-{d}T{h}", 0) + path.stat().st_size
    return sizes


class TestQuota:
    def test_quota_holds_over_thousands_of_frames(
        self, run_dir: Path, open_log: OpenLog, clock: Any, tiny: CameraSimulator,
        run_bytes: Callable[[Path], int],
    ) -> None:  # fmt: skip
        """2,400 frames over 40 hours under max_bytes: the run stays within one hour of the
        quota at every flush and within 5% of it at the end; the oldest frames went first."""
        limit = 1_000_000
        log = open_log(run_dir, format="png", max_bytes=limit)
        largest_hour = 0
        for i in range(2400):
            clock.tick(60)  # 60 frames an hour
            log.log(tiny.frame(), source="cam", i=i)
            if i % 100 == 99:
                assert log.flush(timeout=60)
                largest_hour = max([largest_hour, *_hour_sizes(run_dir).values()])
                assert run_bytes(run_dir) <= limit + largest_hour
        log.close()
        assert log.stats()["written"] == 2400
        assert run_bytes(run_dir) <= limit * 1.05
        assert run_bytes(run_dir) >= limit - 2 * largest_hour
        kept = [r["meta"]["i"] for r in imagelog.read(run_dir).records()]
        assert kept == list(range(kept[0], 2400))  # a contiguous tail: oldest purged first
        assert kept[0] > 1400
        report = verify(imagelog.read(run_dir), sample=1.0)
        assert not report.damaged, report.findings[:5]

    def test_purges_are_recorded(
        self, run_dir: Path, open_log: OpenLog, clock: Any, tiny: CameraSimulator
    ) -> None:
        """Each purge is an index event: what (partition, files, bytes), when, why."""
        with open_log(run_dir, format="png", max_bytes=300_000) as log:
            for i in range(400):
                clock.tick(60)
                log.log(tiny.frame(), i=i)
                if i % 50 == 49:
                    log.flush()
        events = _events(run_dir)
        assert events
        for ev in events:
            purge = ev["imagelog"]["purge"]
            assert ev["event"]["reason"] == "max_bytes"
            assert purge["bytes"] > 0
            assert purge["files"] > 0
            assert purge["partition"] < ev["event"]["created"]
            assert ev["message"].startswith("purged")
        assert all(r["event"]["action"] == "logged" for r in imagelog.read(run_dir).records())

    def test_quota_smaller_than_an_hour_purges_oldest_files(
        self, run_dir: Path, open_log: OpenLog, clock: Any, tiny: CameraSimulator,
        run_bytes: Callable[[Path], int],
    ) -> None:  # fmt: skip
        """All frames in one hour: the oldest files go with a tombstone; records() skips them."""
        camera = CameraSimulator(160, 120, seed=5)
        with open_log(run_dir, format="png", max_bytes=1_000_000) as log:
            for i in range(150):
                clock.tick(1)
                log.log(camera.frame(), i=i)
                if i % 10 == 9:
                    log.flush()
                    assert run_bytes(run_dir) <= 1_000_000 * 1.05
        run = imagelog.read(run_dir)
        kept = [r["meta"]["i"] for r in run.records()]
        assert kept == list(range(kept[0], 150))
        assert kept[0] > 50
        tombstones = [e for e in _events(run_dir) if not e["imagelog"]["purge"]["whole"]]
        assert tombstones
        assert sum(len(e["imagelog"]["purge"]["ids"]) for e in tombstones) == kept[0]
        report = verify(run, sample=1.0)
        assert not report.damaged
        assert report.purged == kept[0]

    def test_reopen_counts_what_is_there(
        self, run_dir: Path, open_log: OpenLog, clock: Any, tiny: CameraSimulator,
        run_bytes: Callable[[Path], int],
    ) -> None:  # fmt: skip
        """A run written without a quota is brought under one set when it is opened again."""
        with open_log(run_dir, format="png") as log:
            for i in range(400):
                clock.tick(60)
                log.log(tiny.frame(), i=i)
        assert run_bytes(run_dir) > 600_000
        with open_log(run_dir, format="png", max_bytes=400_000) as log:
            assert log.flush(timeout=60)
        assert run_bytes(run_dir) <= 400_000
        assert [r["meta"]["i"] for r in imagelog.read(run_dir).records()][-1] == 399

    def test_two_writers_share_one_quota(
        self, run_dir: Path, open_log: OpenLog, clock: Any, tiny: CameraSimulator,
        run_bytes: Callable[[Path], int],
    ) -> None:  # fmt: skip
        """Two writers on one run, each with the quota: the run stays within it (plus an hour)."""
        limit = 500_000
        a = open_log(run_dir, format="png", max_bytes=limit)
        b = open_log(run_dir, format="png", max_bytes=limit)
        largest = 0
        for i in range(1200):
            clock.tick(60)
            (a if i % 2 else b).log(tiny.frame(), source="ab"[i % 2], i=i)
            if i % 100 == 99:
                a.flush()
                b.flush()
                largest = max([largest, *_hour_sizes(run_dir).values()])
                assert run_bytes(run_dir) <= limit + 2 * largest
        a.close()
        b.close()
        assert run_bytes(run_dir) <= limit * 1.05 + largest
        report = verify(imagelog.read(run_dir), sample=0.2)
        assert not report.damaged, report.findings[:5]


class TestAgeAndKeep:
    def test_age_limit_purges_whole_old_hours(
        self, run_dir: Path, open_log: OpenLog, clock: Any, tiny: CameraSimulator
    ) -> None:
        """max_age="3h": hours that ended more than 3 hours ago are gone, newer ones complete."""
        with open_log(run_dir, format="png", max_age="3h") as log:
            for i in range(60):
                clock.tick(600)  # 6 frames an hour, 10 hours
                log.log(tiny.frame(), i=i)
                log.flush()
        left = [r["meta"]["i"] for r in imagelog.read(run_dir).records()]
        assert left == list(range(left[0], 60))
        oldest = imagelog.read(run_dir).records().__next__()["event"]["created"]
        from imagelog.record import iso_utc

        assert oldest >= iso_utc(clock() - 4 * 3600 * 10**9)
        assert 18 <= len(left) <= 24
        assert {e["event"]["reason"] for e in _events(run_dir)} == {"max_age"}

    @pytest.mark.parametrize("how", ["label", "callable"])
    def test_keep_rules_protect_records(
        self, run_dir: Path, open_log: OpenLog, clock: Any, tiny: CameraSimulator, how: str
    ) -> None:
        """Records kept by label keep="1" or by keep=callable survive purges, files and lines."""
        keep = (lambda rec: bool(rec.get("meta", {}).get("defect"))) if how == "callable" else None
        with open_log(run_dir, format="png", max_bytes=150_000, keep=keep) as log:
            for i in range(600):
                clock.tick(60)
                special = i % 97 == 0
                labels = {"keep": "1"} if special and how == "label" else None
                log.log(tiny.frame(), i=i, defect=special, labels=labels)
                if i % 50 == 49:
                    log.flush()
        run = imagelog.read(run_dir)
        left = {r["meta"]["i"]: r for r in run.records()}
        specials = [i for i in range(600) if i % 97 == 0]
        assert set(specials) <= set(left)
        assert min(i for i in left if i not in specials) > 300
        for i in specials:
            assert run.load(left[i]).shape == (24, 32, 3)
        assert any(e["imagelog"]["purge"]["kept"] for e in _events(run_dir))
        assert not verify(run, sample=1.0).damaged


class TestPurgeCommand:
    def _old_run(self, run_dir: Path, open_log: OpenLog, clock: Any, tiny: CameraSimulator) -> None:
        with open_log(run_dir, format="png") as log:
            for i in range(48):
                clock.tick(1800)  # 2 frames an hour, 24 hours, in January 2024
                log.log(tiny.frame(), i=i, labels={"keep": "1"} if i == 0 else None)

    def test_dry_run_deletes_nothing(
        self, run_dir: Path, open_log: OpenLog, clock: Any, tiny: CameraSimulator,
        capsys: pytest.CaptureFixture[str],
    ) -> None:  # fmt: skip
        """purge --dry-run lists what would go and leaves the run as it was."""
        self._old_run(run_dir, open_log, clock, tiny)
        before = sorted(p for p in run_dir.rglob("*") if p.is_file())
        assert cli.main(["purge", str(run_dir), "--older-than", "7d", "--dry-run", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["dry_run"] is True
        assert out["purged_files"] == 47  # everything but the kept one: the run is from 2024
        assert sorted(p for p in run_dir.rglob("*") if p.is_file()) == before

    def test_older_than_and_max_bytes(
        self, run_dir: Path, open_log: OpenLog, clock: Any, tiny: CameraSimulator,
        capsys: pytest.CaptureFixture[str], run_bytes: Callable[[Path], int],
    ) -> None:  # fmt: skip
        """purge --max-bytes brings the run under the size; --older-than empties an old run."""
        self._old_run(run_dir, open_log, clock, tiny)
        assert cli.main(["purge", str(run_dir), "--max-bytes", "60KB"]) == 0
        out = capsys.readouterr().out
        assert "purged" in out
        assert run_bytes(run_dir) <= 60_000
        assert cli.main(["purge", str(run_dir), "--older-than", "7d"]) == 0
        left = list(imagelog.read(run_dir).records())
        assert [r["meta"]["i"] for r in left] == [0]  # labelled keep="1"
        assert _events(run_dir)
        assert cli.main(["purge", str(run_dir)]) == 2

"""Retention tiers: a run of camera-like frames goes down a 4-step ladder over simulated days
(``--as-of``); every reader sees each frame once, as it is now; a kill -9 anywhere in a pass
loses, duplicates or dangles nothing."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog import audit
from imagelog.cli import main
from imagelog.logger import ImageLog
from imagelog.record import iso_utc
from imagelog.samples import CameraSimulator
from imagelog.settings import Settings
from imagelog.stores import make_store
from imagelog.tiers import Tier, history, ladders_of, run_pass

from .conftest import wait_for

T0 = 1_764_000_000 * 10**9  # 2025-11-24T16:00:00Z
DAY = 86_400 * 10**9
N = 40  # frames, 2 s apart (log time): thinning to one per 10 s keeps 8 (+ the kept frame)
LADDER = [
    Tier(after="1d", format="preview"),
    Tier(after="7d", thin="10s"),
    Tier(after="30d", thumbnail=64),
    Tier(after="365d", delete=True),
]
STEPS = ["1d:format=preview", "7d:thin=10s", "30d:thumbnail=64", "365d:delete"]


def make_run(path: str | Path, *, n: int = N, storage_options: dict[str, Any] | None = None,
             **settings: Any) -> list[str]:  # fmt: skip
    """Log ``n`` camera-like frames 2 s apart from T0 (frame 3 labelled keep, frame 12 saved by
    a trigger); return their ids."""
    cam = CameraSimulator(320, 240, seed=7)
    clock = [T0]
    s = Settings.from_kwargs(storage_options=storage_options or {}, **settings)
    ids = []
    store = make_store(path, create=True, storage_options=storage_options or {})
    with ImageLog(store, s, clock=lambda: clock[0]) as log:
        for i in range(n):
            clock[0] = T0 + i * 2 * 10**9
            labels = {"keep": "1"} if i == 3 else {"trigger": "t1"} if i == 12 else None
            ids.append(log.log(cam.frame(), source="cam", labels=labels, i=i))
        assert log.flush()
    return ids


def as_of(days: float) -> str:
    return iso_utc(T0 + int(days * DAY))


def current(url: str, **opts: Any) -> list[dict[str, Any]]:
    return list(imagelog.read(url, **opts).records())


def check_readable_once(url: str, opts: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every record loads; no id twice; verify finds no damage and no orphan."""
    kw = {"storage_options": opts} if opts else {}
    run = imagelog.read(url, **kw)
    recs = list(run.records())
    ids = [r["image"]["id"] for r in recs]
    assert len(ids) == len(set(ids)), "an id is listed twice"
    for r in recs:
        arr = run.load(r)
        assert arr.shape[:2] == (r["image"]["height"], r["image"]["width"])
    report = audit.verify(run, sample=1.0)
    assert not report.damaged, report.findings
    assert not report.of("orphan"), report.of("orphan")
    return recs


def test_a_run_goes_down_the_ladder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At each step every surviving id is present once, loads, has its tier's format, and
    ``verify`` passes; query, ls and show see the current file; the history explains each id."""
    url = str(tmp_path / "run")
    ids = make_run(url)
    steps = [a for s in STEPS for a in ("--step", s)]
    recs = check_readable_once(url)
    assert {r["image"]["format"] for r in recs} == {"jxl"}

    assert main(["tier", url, *steps, "--as-of", as_of(0.5)]) == 0  # nothing is a day old
    assert {r["image"]["format"] for r in current(url)} == {"jxl"}

    assert main(["tier", url, *steps, "--as-of", as_of(2)]) == 0
    recs = check_readable_once(url)
    assert [r["image"]["id"] for r in recs] == ids
    by_id = {r["image"]["id"]: r for r in recs}
    assert by_id[ids[3]]["image"]["format"] == "jxl"  # labelled keep: exempt
    assert all(by_id[i]["image"]["format"] == "jpeg" for i in ids if i != ids[3])
    assert all(by_id[i]["file"]["path"].endswith(".t1.jpg") for i in ids if i != ids[3])
    assert all(by_id[i]["imagelog"]["tier"]["step"] == 1 for i in ids if i != ids[3])
    run = imagelog.read(url)
    assert run.query("SELECT format, count(*) FROM records WHERE action = 'logged' GROUP BY 1 ORDER BY 1").fetchall() == [
        ("jpeg", N - 1), ("jxl", 1),
    ]  # fmt: skip
    assert run.get(ids[0])["image"]["format"] == "jpeg"
    assert not list(Path(url, "images").rglob("*.jxl"))[1:]  # the old files are gone but one

    assert main(["tier", url, *steps, "--as-of", as_of(8)]) == 0
    recs = check_readable_once(url)
    kept = [r["image"]["id"] for r in recs]
    # one per 10 s interval (5 frames): the triggered frame wins its interval, the keep frame
    # stays and its interval keeps nothing else
    assert ids[12] in kept and ids[10] not in kept and ids[3] in kept
    assert ids[0] not in kept and ids[1] not in kept  # the keep frame's interval
    assert len(kept) == N // 5
    assert {r["image"]["format"] for r in recs if r["image"]["id"] != ids[3]} == {"jpeg"}
    events = list(imagelog.read(url).records(include_events=True))
    thinned = [e for e in events if e["event"]["action"] == "thinned"]
    gone = {i for e in thinned for i in e["imagelog"]["thinned"]["ids"]}
    assert gone == set(ids) - set(kept)
    assert sum(e["imagelog"]["thinned"]["frames"] for e in thinned) == len(gone)
    seqs = {
        s for e in thinned for lo, hi in e["imagelog"]["thinned"]["seqs"] for s in range(lo, hi + 1)
    }
    assert len(seqs) == len(gone)

    assert main(["tier", url, *steps, "--as-of", as_of(31)]) == 0
    recs = check_readable_once(url)
    assert [r["image"]["id"] for r in recs] == kept
    for r in recs:
        if r["image"]["id"] == ids[3]:
            assert (r["image"]["format"], r["image"]["width"]) == ("jxl", 320)
        else:
            assert (r["image"]["format"], r["image"]["width"], r["image"]["height"]) == (
                "jpeg",
                64,
                48,
            )
            assert r["file"]["path"].endswith(".t3.jpg")

    capsys.readouterr()
    assert main(["show", url, ids[12], "--history"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out] == ["logged", "tiered", "tiered"]
    assert "step 1" in out[1] and "step 3" in out[2] and "64x48" in out[2]
    assert [r["event"]["action"] for r in history(make_store(url), ids[10])] == [
        "logged", "tiered", "thinned",
    ]  # fmt: skip

    assert main(["tier", url, *steps, "--as-of", as_of(366)]) == 0
    recs = check_readable_once(url)
    assert [r["image"]["id"] for r in recs] == [ids[3]]  # only the kept frame is left
    assert sorted(p.name for p in Path(url, "images").rglob("*.*")) == [
        Path(recs[0]["file"]["path"]).name
    ]


def test_a_pass_is_idempotent_and_a_dry_run_changes_nothing(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    make_run(url, n=10)
    store = make_store(url)
    ladders = ladders_of(LADDER)
    before = sorted(p.name for p in Path(url).rglob("*"))
    dry = run_pass(store, ladders, now_ns=T0 + 8 * DAY, dry_run=True)
    assert (dry.tiered, dry.thinned, dry.exempt) == (1, 8, 1)  # 4 + 4 go; the keep frame stays
    assert sorted(p.name for p in Path(url).rglob("*")) == before
    first = run_pass(store, ladders, now_ns=T0 + 8 * DAY)
    assert (first.tiered, first.thinned) == (1, 8)
    again = run_pass(store, ladders, now_ns=T0 + 8 * DAY)
    assert (again.tiered, again.thinned, again.deleted, again.cleaned) == (0, 0, 0, 0)
    check_readable_once(url)


def test_open_with_tiers_runs_passes_in_the_background(tmp_path: Path) -> None:
    """``tiers=`` on open: the writer's tier thread moves its old frames (its clock says days
    passed) and leaves the ladder for ``imagelog tier``."""
    url = str(tmp_path / "run")
    ids = make_run(url, n=6)
    clock = [T0 + 2 * DAY]
    s = Settings.from_kwargs(tiers=LADDER)
    with ImageLog(make_store(url), s, clock=lambda: clock[0]) as log:
        wait_for(lambda: {r["image"]["format"] for r in current(url)} == {"jpeg", "jxl"},
                 "the tier thread's pass")  # fmt: skip
        assert log.settings.tiers is not None
    assert [r["image"]["id"] for r in check_readable_once(url)] == ids
    assert main(["tier", url, "--as-of", as_of(8), "--dry-run"]) == 0  # the saved ladder


def test_settings_and_steps_refuse_mistakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ({"after": "1d"}, {"after": "1d", "thin": "10s", "delete": True},
                {"after": "-1d", "format": "preview"}, {"after": "1d", "thumbnail": 0},
                {"after": "1d", "thin": "0s"}, {"after": "1d", "format": "nosuch"},
                {"after": "soon", "format": "preview"},
                {"after": "1d", "format": "jpeg:qualty=5"}):  # fmt: skip
        with pytest.raises(
            (imagelog.InvalidSetting, imagelog.UnknownFormat, imagelog.FormatMismatch, TypeError)
        ):
            Tier(**bad)  # type: ignore[arg-type]
    with pytest.raises(imagelog.InvalidSetting, match="order of age"):
        imagelog.open(
            tmp_path / "a", tiers=[Tier(after="7d", thin="10s"), Tier(after="1d", format="preview")]
        )
    with pytest.raises(imagelog.InvalidSetting, match="delete step must be the last"):
        ladders_of([Tier(after="1d", delete=True), Tier(after="7d", thin="10s")])
    with pytest.raises(TypeError):
        ladders_of(["1d"])
    for share in (0, 1.5, -1, "half", True):
        with pytest.raises(imagelog.InvalidSetting, match="tier_cpu"):
            imagelog.open(tmp_path / "b", tiers=LADDER, tier_cpu=share)
    url = str(tmp_path / "run")
    make_run(url, n=2)
    capsys.readouterr()
    for argv, what in (
        (["tier", str(tmp_path / "nope"), "--step", "1d:delete"], "no imagelog run"),
        (["tier", url], "no ladder"),
        (["tier", url, "--step", "1d:shrink=5"], "is not one of"),
        (["tier", url, "--step", "1d"], "AFTER:WHAT"),
        (["tier", url, "--step", "1d:format=preview", "--as-of", "yesterday"], "--as-of"),
        (["tier", url, "--step", "1d:thumbnail=big"], "thumbnail takes pixels"),
        (["show", url, "ffff", "--history"], "no record"),
    ):
        assert main(argv) != 0, argv
        err = capsys.readouterr().err
        assert what in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert [r["image"]["format"] for r in current(url)] == ["jxl", "jxl"]  # nothing changed


def test_max_bytes_sends_the_oldest_on_early(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    ids = make_run(url, n=8)
    size = sum(r["file"]["size"] for r in current(url)) // 8
    ladder = ladders_of([Tier(after="1d", format="preview", max_bytes=size * 3)])
    run_pass(make_store(url), ladder, now_ns=T0 + 2 * DAY)
    recs = current(url)
    # all re-encoded at 1d; the cap then pushes the oldest past the last step: deleted
    ladder_cap = ladders_of([Tier(after="1h", format="preview"),
                             Tier(after="1d", thin="1s", max_bytes=sum(r["file"]["size"] for r in recs[-2:]))])  # fmt: skip
    run_pass(make_store(url), ladder_cap, now_ns=T0 + 2 * DAY)
    left = [r["image"]["id"] for r in check_readable_once(url)]
    assert ids[3] in left  # keep: exempt from caps too
    assert left[-2:] == ids[-2:] and len(left) == 3


# -- kill -9 ---------------------------------------------------------------------------------
CHILD = """
import sys
from imagelog.cli import main
import imagelog.tiers._pass, imagelog.records, imagelog.codecs, duckdb
imagelog.tiers._pass.BATCH = 1  # one frame per index append: more points to be killed at
print("ready", flush=True)
sys.exit(main(["tier", sys.argv[1], "--as-of", sys.argv[2], "--json",
               "--step", "1d:format=preview", "--step", "7d:thin=10s",
               "--step", "30d:thumbnail=64", "--step", "365d:delete"]))
"""


def _pass(url: str, days: float) -> subprocess.Popen[bytes]:
    """A pass in a child process, started once its imports are done."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url, as_of(days)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def _wait(proc: subprocess.Popen[bytes]) -> int:
    rc = proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()
    return rc


def _state(url: str) -> list[tuple[str, str, int]]:
    return [(r["image"]["id"], r["image"]["format"], r["image"]["width"]) for r in current(url)]


def _tombstoned(url: str) -> set[str]:
    events = imagelog.read(url).records(include_events=True)
    return {i for e in events if e["event"]["action"] in ("thinned", "purged")
            for i in (e["imagelog"].get("thinned") or e["imagelog"].get("purge") or {}).get("ids", [])}  # fmt: skip


def _kill_trials(template: str, work: Path, days: float, trials: int, seed: int) -> int:
    """Copy the template, start a pass, kill -9 it after a random delay within the time a
    whole pass takes; then: every id either present once and readable or tombstoned; resumed,
    the run ends exactly as an uninterrupted pass leaves it. Returns how many kills landed
    after the index changed and before the pass was done."""
    ref = str(work / "ref")
    shutil.copytree(template, ref)
    proc = _pass(ref, days)
    t = time.monotonic()
    assert _wait(proc) == 0
    whole = time.monotonic() - t
    want, before = _state(ref), _state(template)
    ids = {r["image"]["id"] for r in current(template)}
    rng = random.Random(seed)
    midway = 0
    for trial in range(trials):
        url = str(work / f"t{trial}")
        shutil.copytree(template, url)
        proc = _pass(url, days)
        time.sleep(rng.uniform(0, whole))
        proc.send_signal(signal.SIGKILL)
        _wait(proc)
        midway += _state(url) not in (want, before)
        recs = current(url)
        present = [r["image"]["id"] for r in recs]
        assert len(present) == len(set(present)), f"trial {trial}: an id twice"
        assert set(present) | _tombstoned(url) == ids, f"trial {trial}: a frame lost"
        run = imagelog.read(url)
        for r in recs:
            run.load(r)  # each frame readable, in one tier
        report = audit.verify(run, sample=0.0)
        assert not report.of("missing") and not report.of("hash"), (trial, report.findings)
        assert main(["tier", url, *[a for s in STEPS for a in ("--step", s)], "--as-of",
                     as_of(days)]) == 0  # resumed  # fmt: skip
        got = [
            (r["image"]["id"], r["image"]["format"], r["image"]["width"])
            for r in check_readable_once(url)
        ]
        assert got == want, f"trial {trial}"
        shutil.rmtree(url)
    return midway


def test_kill9_during_a_pass_loses_duplicates_and_dangles_nothing(tmp_path: Path) -> None:
    """20 trials, killed at random points of a pass that re-encodes, thins and shrinks."""
    template = str(tmp_path / "template")
    make_run(template)
    assert (
        main(["tier", template, *[a for s in STEPS for a in ("--step", s)], "--as-of", as_of(2)])
        == 0
    )
    # from 2 days to 31: thin (tombstones, then files) and thumbnails (files, lines, removals)
    midway = _kill_trials(template, tmp_path, 31, trials=10, seed=1)
    fresh = str(tmp_path / "fresh")
    make_run(fresh)  # from as logged to 2 days: re-encoding only
    (tmp_path / "b").mkdir()
    midway += _kill_trials(fresh, tmp_path / "b", 2, trials=10, seed=2)
    assert midway, "no kill landed inside a pass: the trials tested nothing"


def test_an_orphan_new_file_and_a_leftover_old_file_are_cleaned(tmp_path: Path) -> None:
    """What a kill between the steps leaves: a new file without its event is removed; an old
    file whose event was written is removed; the frame reads once throughout."""
    url = str(tmp_path / "run")
    make_run(url, n=3)
    store = make_store(url)
    recs = current(url)
    old = recs[0]["file"]["path"]
    orphan = old.rsplit(".", 1)[0] + ".t1.jpg"
    Path(url, orphan).write_bytes(b"half a file")  # a new file whose event never came
    rep = run_pass(store, ladders_of([Tier(after="1d", format="preview")]), now_ns=T0 + 2 * DAY)
    assert (rep.tiered, rep.cleaned) == (3, 0)  # the orphan was overwritten by the new file
    check_readable_once(url)
    # an old file back in place, as if the removal after the event never ran
    Path(url, old).write_bytes(b"stale")
    assert run_pass(store, ladders_of([Tier(after="1d", format="preview")]),
                    now_ns=T0 + 3 * DAY, seen={}).cleaned == 1  # fmt: skip
    assert not Path(url, old).exists()
    check_readable_once(url)


def test_records_engine_sees_current_files_everywhere(tmp_path: Path) -> None:
    """export and ls read the superseded record; the raw line stays as written."""
    url = str(tmp_path / "run")
    make_run(url, n=4)
    run_pass(make_store(url), ladders_of(LADDER), now_ns=T0 + 2 * DAY)
    raw = [json.loads(line) for seg in Path(url, "index").glob("*.jsonl")
           for line in seg.read_text().splitlines()]  # fmt: skip
    assert {r["image"]["format"] for r in raw if r["event"]["action"] == "logged"} == {"jxl"}
    out = tmp_path / "out"
    assert main(["export", url, str(out), "--to", "imagefolder"]) == 0
    exported = sorted(p.suffix for p in out.rglob("*") if p.suffix in (".jpg", ".jxl", ".png"))
    assert exported == [".jpg"] * 3 + [".png"]  # the keep frame: JPEG XL, converted
    assert json.loads((out / "export.json").read_text())["report"]["gaps"] == {}
    arr = imagelog.read(url).load(current(url)[0])
    assert isinstance(arr, np.ndarray) and arr.shape == (240, 320, 3)


def test_the_viewer_index_sees_current_files(tmp_path: Path) -> None:
    """The viewer's live index applies the same rule: current format, path and record; thinned
    frames are gone; the new file is one the viewer serves."""
    from imagelog.records import Filters
    from imagelog.viewer.index import LiveIndex

    url = str(tmp_path / "run")
    ids = make_run(url, n=10)
    run_pass(make_store(url), ladders_of(LADDER), now_ns=T0 + 8 * DAY)
    index = LiveIndex(imagelog.read(url))
    try:
        index.refresh()
        assert index.count(Filters()) == len(current(url)) == 2
        assert [r["format"] for r in index.page(Filters(), 0, 10)] == ["jxl", "jpeg"]
        kept = current(url)[1]
        row = index.row(kept["image"]["id"])
        assert row is not None and row["path"] == kept["file"]["path"]
        assert json.loads(index.line(row)) == kept
        assert index.owns(kept["file"]["path"]) and ids[3] == current(url)[0]["image"]["id"]
    finally:
        index.close()


def test_compaction_keeps_the_tiers(tmp_path: Path) -> None:
    """Compacted hours (tier events included) read the same."""
    from imagelog.compact import compact

    url = str(tmp_path / "run")
    make_run(url, n=10)
    run_pass(make_store(url), ladders_of(LADDER), now_ns=T0 + 31 * DAY)
    before = current(url)
    compact(make_store(url), now_ns=2**62)
    assert not list(Path(url, "index").glob("*.jsonl"))
    assert current(url) == before
    assert {r["image"]["width"] for r in before} == {64, 320}
    check_readable_once(url)


def test_a_year_on_an_hour_with_no_frame_left_is_removed_whole(tmp_path: Path) -> None:
    """The delete step: the hour's files and index lines go (tier segments last); one whole
    ``purged`` event (reason ``tier``) says so."""
    url = str(tmp_path / "run")
    make_run(url, n=3)  # no frame labelled keep
    steps = [a for s in STEPS for a in ("--step", s)]
    for days in (2, 8, 31, 366):
        assert main(["tier", url, *steps, "--as-of", as_of(days)]) == 0
    assert current(url) == []
    assert [p.name for p in Path(url, "index").glob("2025-11-24T16_*")] == []
    assert not [p for p in Path(url, "images").rglob("*") if p.is_file()]
    events = list(imagelog.read(url).records(include_events=True))
    whole = [
        e for e in events if e["event"]["action"] == "purged" and e["imagelog"]["purge"]["whole"]
    ]
    assert len(whole) == 1 and whole[0]["event"]["reason"] == "tier"
    check_readable_once(url)


def test_one_pass_at_a_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A live pass's lease turns another pass away (it changes nothing); a lease whose process
    is gone, or which expired, does not."""
    from imagelog.record import HOSTNAME
    from imagelog.tiers import LOCK_KEY

    url = str(tmp_path / "run")
    make_run(url, n=3)
    lock = Path(url, LOCK_KEY)
    live = {"owner": "other", "host": HOSTNAME, "pid": os.getpid(), "expires": time.time() + 60}
    lock.write_text(json.dumps(live))
    rep = run_pass(make_store(url), ladders_of(LADDER), now_ns=T0 + 2 * DAY)
    assert rep.busy and rep.tiered == 0
    capsys.readouterr()
    steps = [a for s in STEPS for a in ("--step", s)]
    assert main(["tier", url, *steps, "--as-of", as_of(2)]) == 1
    err = capsys.readouterr().err
    assert "another tier pass" in err and len(err.strip().splitlines()) == 1
    assert {r["image"]["format"] for r in current(url)} == {"jxl"}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({**live, "pid": dead.pid}))
    assert run_pass(make_store(url), ladders_of(LADDER), now_ns=T0 + 2 * DAY).tiered == 3
    assert not lock.exists()  # released
    lock.write_text(json.dumps({**live, "expires": time.time() - 1}))
    assert not run_pass(make_store(url), ladders_of(LADDER), now_ns=T0 + 2 * DAY).busy


def test_a_frame_that_does_not_decode_stays_and_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "run")
    ids = make_run(url, n=3)
    bad = current(url)[1]["file"]["path"]
    Path(url, bad).write_bytes(b"not an image")
    capsys.readouterr()
    assert main(["tier", url, "--step", "1d:format=preview", "--as-of", as_of(2)]) == 1
    captured = capsys.readouterr()
    assert bad in captured.err and "Traceback" not in captured.err
    formats = {r["image"]["id"]: r["image"]["format"] for r in current(url)}
    assert formats == {ids[0]: "jpeg", ids[1]: "jxl", ids[2]: "jpeg"}

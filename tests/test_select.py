"""``select=``: which frames are stored, and the books of those that are not."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tests.select_scenes import Scene, scenes

import imagelog
from imagelog import select
from imagelog.errors import InvalidSetting
from imagelog.samples import CameraSimulator, photo
from imagelog.stores import LocalStore, MemoryStore

T0 = 1_764_000_000 * 10**9
FPS = 10
HERE = Path(__file__).parent


def cap(i: int) -> float:
    """Capture time (Unix s) of frame ``i`` at ``FPS``."""
    return T0 / 1e9 + i / FPS


def log_scene(
    run: Path, scene: Scene, policy: object = "changed", **settings: Any
) -> tuple[dict[str, Any], list[int]]:
    """Log a scene (frame i: capture time ``cap(i)``, meta ``i``, its event as a label); return
    the stats and the indices of the frames stored."""
    with imagelog.open(run, select=policy, **settings) as log:
        for i, frame in enumerate(scene.frames()):
            label = scene.label(i)
            log.log(frame, source="cam", captured_at=cap(i), i=i,
                    labels={"event": label} if label else None)  # fmt: skip
    stored = sorted(r["meta"]["i"] for r in imagelog.read(run).records())
    return log.stats(), stored


def everything(run: Path) -> list[dict[str, Any]]:
    return list(imagelog.read(run).records(include_events=True))


def not_selected_seqs(recs: list[dict[str, Any]]) -> list[int]:
    out: list[int] = []
    for r in recs:
        if r["event"]["action"] == "not_selected":
            for a, b in r["imagelog"]["not_selected"]["seqs"]:
                out.extend(range(a, b + 1))
    return out


def assert_books_balance(run: Path, stats: dict[str, Any]) -> None:
    """Every seq log() handed out is in exactly one logged/dropped/failed record or one
    not_selected summary, and the counters agree with the index."""
    recs = everything(run)
    per_frame = [r["image"]["seq"] for r in recs if r["event"]["action"] in
                 ("logged", "dropped", "failed")]  # fmt: skip
    skipped = not_selected_seqs(recs)
    expired = [q for r in recs if r["event"]["action"] == "expired"
               for a, b in r["imagelog"]["expired"]["seqs"] for q in range(a, b + 1)]  # fmt: skip
    assert sorted(per_frame + skipped + expired) == list(range(1, stats["logged"] + 1))
    assert stats["logged"] == (
        stats["written"] + stats["dropped"] + stats["failed"] + stats.get("expired", 0)
        + stats["not_selected"]
    )  # fmt: skip
    assert len(skipped) == stats["not_selected"]
    by_reason: Counter[str] = Counter()
    for r in recs:
        if r["event"]["action"] == "not_selected":
            by_reason.update(r["imagelog"]["not_selected"]["by_reason"])
    assert dict(by_reason) == stats["not_selected_by_reason"]


# -- the done-when of the issue: real photographs turned into camera sequences ---------------------
SCENES = {s.name: s for s in scenes()}


def test_static_scene_stores_at_most_a_tenth(tmp_path: Path) -> None:
    scene = SCENES["static"]
    stats, stored = log_scene(tmp_path / "run", scene)
    assert 1 <= len(stored) <= scene.n // 10
    assert stats["not_selected"] == scene.n - len(stored)
    assert_books_balance(tmp_path / "run", stats)


def test_light_switched_on_stores_at_most_three(tmp_path: Path) -> None:
    scene = SCENES["light switched on"]
    assert scene.step_at is not None
    _, stored = log_scene(tmp_path / "run", scene)
    assert len([i for i in stored if i >= scene.step_at]) <= 3


@pytest.mark.parametrize("name", ["objects enter and leave", "objects, then the light"])
def test_every_labelled_event_is_stored_within_one_frame(tmp_path: Path, name: str) -> None:
    scene = SCENES[name]
    stats, stored = log_scene(tmp_path / "run", scene)
    assert scene.events
    for e in scene.events:
        assert {e.start, e.start + 1} & set(stored), f"{e.name} at frame {e.start} missed: {stored}"
    assert len(stored) <= scene.n // 4  # not a storm: the scene is mostly still
    assert_books_balance(tmp_path / "run", stats)


def test_a_noisy_dark_static_scene_is_still_static(tmp_path: Path) -> None:
    scene = Scene("dark, noisy", 150, noise=6.0, drift=-0.5)  # dusk: half the light, more noise
    _, stored = log_scene(tmp_path / "run", scene)
    assert len(stored) <= scene.n // 10


def test_changed_alone_is_not_fooled_by_a_replaced_reference(tmp_path: Path) -> None:
    """A frame that is judged against the last *stored* frame: a slow change accumulates and is
    stored once it is large, rather than never (as frame-to-frame differences would be)."""
    scene = Scene("creeping", 120, objects=(("chelsea.png", 0, 119, 0, 60, True),))
    _, stored = log_scene(tmp_path / "run", scene)
    assert len(stored) >= 3


# -- the other parts ----------------------------------------------------------------------------
def frames(n: int) -> list[np.ndarray[Any, Any]]:
    cam = CameraSimulator(64, 48, seed=2)
    f = cam.frame()
    return [f] * n


def test_every_caps_and_heartbeats(tmp_path: Path) -> None:
    with imagelog.open(tmp_path / "run", select="changed, every(at_least=5s)") as log:
        for i, f in enumerate(frames(100)):  # 10 s at 10 fps of a still scene
            log.log(f, captured_at=cap(i), i=i)
    stored = sorted(r["meta"]["i"] for r in imagelog.read(tmp_path / "run").records())
    assert stored == [0, 50]  # the heartbeat: a still scene still shows up every 5 s
    with imagelog.open(tmp_path / "run1", select="every(2s)") as log:
        for i, f in enumerate(frames(50)):
            log.log(f, captured_at=cap(i), i=i)
    stored = sorted(r["meta"]["i"] for r in imagelog.read(tmp_path / "run1").records())
    assert stored == [0, 20, 40]  # alone: every frame is a candidate, one per interval
    with imagelog.open(tmp_path / "run2", select="sample(1), every(1s)") as log:
        for i, f in enumerate(frames(30)):
            log.log(f, captured_at=cap(i), i=i)
    stored = sorted(r["meta"]["i"] for r in imagelog.read(tmp_path / "run2").records())
    assert stored == [0, 10, 20]
    assert log.stats()["not_selected_by_reason"] == {"rate": 27}


def test_sample_near_when(tmp_path: Path) -> None:
    policy = select.sample(0.0) | select.near("confidence", at=0.5, within=0.1)
    policy = policy | select.when(lambda meta: meta.get("defect", False))
    with imagelog.open(tmp_path / "run", select=policy) as log:
        for i, f in enumerate(frames(20)):
            log.log(f, i=i, confidence=i / 20, defect=i == 3)
        log.log(frames(1)[0], i=99)  # no confidence: not near anything
    stored = sorted(r["meta"]["i"] for r in imagelog.read(tmp_path / "run").records())
    assert stored == [3, 8, 9, 10, 11, 12]  # 0.4 <= confidence <= 0.6, and the defect
    reasons = log.stats()["not_selected_by_reason"]
    assert reasons == {"not_sampled": 15}
    assert_books_balance(tmp_path / "run", log.stats())


def test_when_by_name_reads_labels_and_meta(tmp_path: Path) -> None:
    with imagelog.open(tmp_path / "run", select="sample(0), when(defect)") as log:
        f = frames(1)[0]
        log.log(f, i=0, labels={"defect": "true"})
        log.log(f, i=1, labels={"defect": "false"})
        log.log(f, i=2, defect=1)
        log.log(f, i=3, defect=0)
    stored = sorted(r["meta"]["i"] for r in imagelog.read(tmp_path / "run").records())
    assert stored == [0, 2]


def test_a_predicate_that_raises_counts_as_false(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with imagelog.open(
        tmp_path / "run", select=[select.sample(0), select.when(lambda m: m["defect"])]
    ) as log:
        rid = log.log(frames(1)[0])  # no "defect" key: KeyError, not a crash in the camera loop
    assert isinstance(rid, str)
    assert log.stats()["not_selected"] == 1
    assert "KeyError" in caplog.text


def test_budget_in_one_process(tmp_path: Path) -> None:
    with imagelog.open(tmp_path / "run", select="budget(5/hour)") as log:
        for i, f in enumerate(frames(12)):
            log.log(f, i=i, source="a")
        log.log(frames(1)[0], source="b")  # a budget per source
    s = log.stats()
    assert s["by_source"]["a"]["written"] == 5
    assert s["by_source"]["a"]["not_selected_by_reason"] == {"budget": 7}
    assert s["by_source"]["b"]["written"] == 1
    assert len(list((tmp_path / "run" / "select").rglob("*"))) > 0
    assert_books_balance(tmp_path / "run", s)


def run_writers(
    url: str, options: dict[str, Any], policy: str, n: int, procs: int = 3
) -> list[dict[str, Any]]:
    t0 = T0 + 5 * 60 * 10**9  # the same hour for every writer, whenever the test runs
    started = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "select_proc.py"),
                url,
                json.dumps(options),
                policy,
                str(n),
                str(t0),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    out = []
    for p in started:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def assert_budget_held(
    recs: list[dict[str, Any]], stats: list[dict[str, Any]], budget: int, n: int
) -> None:
    """At most ``budget`` frames stored in all (here: exactly, as more were logged), the
    not-selected count exact, and every seq of every writer explained once."""
    stored = [r for r in recs if r["event"]["action"] == "logged"]
    assert len(stored) == budget
    assert sum(s["written"] for s in stats) == budget
    assert sum(s["not_selected"] for s in stats) == len(stats) * n - budget
    skipped = sum(
        r["imagelog"]["not_selected"]["frames"]
        for r in recs
        if r["event"]["action"] == "not_selected"
    )
    assert skipped == len(stats) * n - budget
    per_writer: dict[str, list[int]] = {}
    for r in recs:
        w = r["imagelog"]["writer"]
        if r["event"]["action"] == "logged":
            per_writer.setdefault(w, []).append(r["image"]["seq"])
        elif r["event"]["action"] == "not_selected":
            for a, b in r["imagelog"]["not_selected"]["seqs"]:
                per_writer.setdefault(w, []).extend(range(a, b + 1))
    assert sorted(per_writer) == sorted(s["writer"] for s in stats)
    for seqs in per_writer.values():
        assert sorted(seqs) == list(range(1, n + 1))  # every id explained, once


def test_budget_holds_across_three_processes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    stats = run_writers(str(run), {}, "budget(25/hour)", 40)
    assert_budget_held(everything(run), stats, 25, 40)


# -- with the ring, formats, non-array inputs -----------------------------------------------------
def test_select_decides_what_the_ring_holds(tmp_path: Path) -> None:
    with imagelog.open(tmp_path / "run", ring="60s", select="every(at_most=1s)") as log:
        for i, f in enumerate(frames(50)):
            log.log(f, captured_at=cap(i), i=i)
        log.flush()
        assert log.stats()["ring_frames"] == 5  # 0, 10, 20, 30, 40
        log.trigger("look", before=2.5, at=cap(49))  # frames 25..49 -> held 30, 40
    s = log.stats()
    stored = sorted(r["meta"]["i"] for r in imagelog.read(tmp_path / "run").records())
    assert stored == [30, 40]
    assert (s["written"], s["expired"], s["not_selected"]) == (2, 3, 45)
    assert_books_balance(tmp_path / "run", s)


def test_per_source_and_per_call_policies(tmp_path: Path) -> None:
    f = frames(1)[0]
    with imagelog.open(
        tmp_path / "run", select={"still": "changed"}, formats={"still": "png"}
    ) as log:
        for _ in range(5):
            log.log(f, source="still")
            log.log(f, source="other")  # no policy for it: all stored
        log.log(f, source="other", select="sample(0)")
    s = log.stats()["by_source"]
    assert (s["still"]["written"], s["other"]["written"]) == (1, 5)
    assert s["other"]["not_selected_by_reason"] == {"not_sampled": 1}
    exts = {
        r["image"]["source"]: r["file"]["extension"]
        for r in imagelog.read(tmp_path / "run").records()
    }
    assert exts["still"] == "png"
    with imagelog.open(tmp_path / "run2", select={"*": "sample(0)", "keep": "sample(1)"}) as log:
        log.log(f, source="keep")
        log.log(f, source="x")
    assert log.stats()["by_source"]["x"]["not_selected"] == 1


def test_inputs_that_are_not_arrays(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(photo("rocket.jpg")).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    pil = Image.fromarray(photo("camera.png"))
    with imagelog.open(tmp_path / "run", select="changed") as log:
        for _ in range(3):
            log.log(jpeg, source="jpeg")  # passed through untouched: no pixels to judge, stored
            log.log(pil, source="pil")  # judged on its normalised pixels
            log.log(np.asarray(pil)[:, :, 0].copy(), source="gray16", pixel_format="mono8")
    s = log.stats()["by_source"]
    assert s["jpeg"]["written"] == 3
    assert s["pil"]["written"] == 1
    assert s["gray16"]["written"] == 1


def test_ids_of_frames_not_stored_are_explained(tmp_path: Path) -> None:
    with imagelog.open(tmp_path / "run", select="changed") as log:
        ids = [log.log(f, i=i) for i, f in enumerate(frames(10))]
        log.flush()  # the summary is written on flush
        recs = everything(tmp_path / "run")
        assert not_selected_seqs(recs) == list(range(2, 11))
    assert len(set(ids)) == 10
    assert sorted(ids) == ids  # UUIDv7, in call order


def test_summaries_split_by_hour(tmp_path: Path) -> None:
    f = frames(1)[0]
    clock = iter(range(T0 + 3599_500_000_000, T0 + 3700 * 10**9, 100_000_000))  # 0.1 s a tick
    from imagelog.logger import ImageLog
    from imagelog.settings import Settings

    log = ImageLog(LocalStore(tmp_path / "run"), Settings.from_kwargs(select="changed"),
                   clock=lambda: next(clock))  # fmt: skip
    for _ in range(6):
        log.log(f)
    log.close()
    summaries = [r for r in everything(tmp_path / "run") if r["event"]["action"] == "not_selected"]
    assert [s["imagelog"]["not_selected"]["frames"] for s in summaries] == [3, 2]
    hours = {p.name[:13] for p in (tmp_path / "run" / "index").glob("*.jsonl")}
    assert len(hours) == 2


# -- careless users ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("chnaged", "unknown policy 'chnaged'"),
        ("", "empty policy"),
        ("changed(2)", "fraction"),
        ("changed(persist=0)", "persist"),
        ("every()", "needs an interval"),
        ("every(-1s)", "every"),
        ("budget(-3/hour)", "whole number"),
        ("budget(10/fortnight)", "per="),
        ("sample(1.5)", "fraction"),
        ("near(confidence)", "near"),
        ("changed(", "unbalanced"),
        ("when(x, y)", "one metadata key"),
        (42, "select must be a policy"),
        ({"": "changed"}, "source names"),
    ],
)
def test_bad_policies_are_one_line_errors(tmp_path: Path, policy: object, message: str) -> None:
    with pytest.raises((InvalidSetting, TypeError)) as info:
        imagelog.open(tmp_path / "run", select=policy)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_frames_and_metadata_raise_whether_stored_or_not(tmp_path: Path) -> None:
    with imagelog.open(tmp_path / "run", select="sample(0)") as log:
        with pytest.raises(TypeError):
            log.log(frames(1)[0], bad=object())
        with pytest.raises(ValueError, match="image"):
            log.log(b"not an image")
        with pytest.raises(ValueError, match="source"):
            log.log(frames(1)[0], source="")
    assert log.stats()["logged"] == 0


def test_policies_round_trip_through_strings() -> None:
    p = select.changed(0.02) | select.every(at_least="10m") | select.budget(500, per="h")
    assert select.parse(p.spec()) == p
    assert select.parse("near(key=confidence, at=0.5, within=0.1)") == select.parse(
        "near(confidence, 0.5, 0.1)"
    )


@pytest.mark.parametrize("store", [MemoryStore, LocalStore])
def test_put_if_absent_creates_once(tmp_path: Path, store: type) -> None:
    s = store(str(tmp_path / "run")) if store is LocalStore else store("x")
    assert s.put_if_absent("select/a/b/0", b"1")
    assert not s.put_if_absent("select/a/b/0", b"2")
    assert s.get("select/a/b/0") == b"1"


def test_thumbnail_cost_does_not_copy_the_frame() -> None:
    big = np.zeros((1080, 1920, 3), np.uint8)
    t = select.luma_thumbnail(big)
    assert t is not None and t.size < 2000
    assert select.luma_thumbnail(np.zeros((2, 2), np.uint8)) is None
    for dtype in (np.uint16, np.float32, np.bool_):
        assert select.luma_thumbnail(np.zeros((64, 64), dtype)) is not None


# -- the replay ---------------------------------------------------------------------------------
def test_replay_reports_per_source_and_hour_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imagelog.cli import main

    scene = SCENES["objects enter and leave"]
    run = tmp_path / "run"
    with imagelog.open(run, format="png") as log:  # everything stored: yesterday's run
        for i, frame in enumerate(scene.frames()):
            label = scene.label(i)
            log.log(frame, source="yard", captured_at=cap(i), i=i,
                    labels={"event": label} if label else None)  # fmt: skip
    before = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*"))
    assert main(["select", str(run), "--policy", "changed", "--labels", "event", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    _, live = log_scene(tmp_path / "live", scene)
    assert out["frames"] == scene.n
    assert out["would_store"] == len(live)  # the replay decides as log() would
    assert out["labelled"] == len(scene.events)
    assert out["missed"] == []
    assert sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*")) == before
    # a coarse policy misses events, and says which
    assert main(["select", str(run), "--policy", "every(10s)", "--labels", "event"]) == 0
    text = capsys.readouterr().out
    assert f"labelled (event): {len(scene.events)} frame(s), {len(scene.events)} missed" in text
    assert "chelsea.png enters" in text
    assert "yard" in text and "total" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policy", "chnaged"], "unknown policy chnaged"),
        (["--policy", "budget(-1/hour)"], "whole number"),
    ],
)
def test_replay_careless_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from imagelog.cli import main

    with imagelog.open(tmp_path / "run") as log:
        log.log(frames(1)[0])
    assert main(["select", str(tmp_path / "run"), *argv]) == 2  # a usage error
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert main(["select", str(tmp_path / "nowhere"), "--policy", "changed"]) == 1
    assert "no imagelog run" in capsys.readouterr().err
    with imagelog.open(tmp_path / "empty", select="sample(0)") as log:
        log.log(frames(1)[0])
    assert main(["select", str(tmp_path / "empty"), "--policy", "changed"]) == 1
    assert "no stored frames" in capsys.readouterr().err


def test_budget_claims_of_old_windows_are_removed(tmp_path: Path) -> None:
    from imagelog.logger import ImageLog
    from imagelog.settings import Settings

    now = [T0]
    log = ImageLog(LocalStore(tmp_path / "run"), Settings.from_kwargs(select="budget(2/minute)"),
                   clock=lambda: now[0])  # fmt: skip
    f = frames(1)[0]
    for minute in range(4):
        now[0] = T0 + minute * 60 * 10**9
        for _ in range(3):
            log.log(f)
    log.close()
    windows = {p.parent.name for p in (tmp_path / "run" / "select").rglob("0*")}
    assert windows == {"2025-11-24T1602", "2025-11-24T1603"}  # the current and previous minute
    assert log.stats()["written"] == 8
    assert log.stats()["not_selected_by_reason"] == {"budget": 4}


def test_non_ascii_sources_get_their_own_budget(tmp_path: Path) -> None:
    with imagelog.open(tmp_path / "run", select="budget(1/day)", format="png") as log:
        f = frames(1)[0]
        for source in ("Kamera Ü", "Kamera_Ü", "камера", "Kamera Ü"):
            log.log(f, source=source)
    s = log.stats()["by_source"]
    assert {k: v["written"] for k, v in s.items()} == {"Kamera Ü": 1, "Kamera_Ü": 1, "камера": 1}
    assert s["Kamera Ü"]["not_selected"] == 1


def test_when_stores_beyond_caps_and_budgets(tmp_path: Path) -> None:
    with imagelog.open(tmp_path / "run", select="every(1h), budget(1/hour), when(defect)") as log:
        f = frames(1)[0]
        for i in range(6):
            log.log(f, i=i, defect=i in (2, 4))
    stored = sorted(r["meta"]["i"] for r in imagelog.read(tmp_path / "run").records())
    assert stored == [0, 2, 4]
    assert log.stats()["not_selected_by_reason"] == {"rate": 3}


def test_float_frames_with_nan_are_judged(tmp_path: Path) -> None:
    depth = np.linspace(0.5, 4.0, 64 * 48, dtype=np.float32).reshape(48, 64)
    depth[10:20, 10:20] = np.nan  # no return from the sensor there
    moved = depth.copy()
    moved[25:45, 30:60] = 0.3  # something close to the camera
    with imagelog.open(tmp_path / "run", select="changed") as log:
        for d in (depth, depth, depth, moved, moved, moved):
            log.log(d)
    assert log.stats()["written"] == 2  # the first, and the change at its second frame


def test_a_summary_does_not_wait_for_the_next_frame_not_stored(tmp_path: Path) -> None:
    from imagelog.logger import ImageLog
    from imagelog.settings import Settings

    now = [T0]
    log = ImageLog(LocalStore(tmp_path / "run"), Settings.from_kwargs(select="changed"),
                   clock=lambda: now[0])  # fmt: skip
    still = frames(1)[0]
    for _ in range(3):
        log.log(still)  # stored, then 2 not selected
    now[0] += 61 * 10**9
    log.log(still, select="sample(1)")  # a frame stored a minute later: the summary is due
    try:
        log._pipeline.queue.wait_done(log._pipeline.queue.mark(), 60)
        summaries = [
            r for r in everything(tmp_path / "run") if r["event"]["action"] == "not_selected"
        ]
        assert [s["imagelog"]["not_selected"]["frames"] for s in summaries] == [2]
    finally:
        log.close()


def test_threads_logging_at_once_keep_the_books(tmp_path: Path) -> None:
    import threading

    f = frames(1)[0]
    with imagelog.open(tmp_path / "run", select="changed, budget(7/hour)") as log:

        def work(k: int) -> None:
            for i in range(50):
                log.log(f, source=f"cam{k % 2}", i=i)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    s = log.stats()
    assert s["logged"] == 200
    assert s["written"] == 2  # one per source: a still scene
    assert_books_balance(tmp_path / "run", s)


def test_stats_counts_the_frames_not_selected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`imagelog stats` names the frames `select=` passed over, read from the open hour's lines
    (after flush) and from the hour's summary (after close): the same number `stats()` counts."""
    from imagelog.cli import main, summarise

    frame = frames(1)[0]
    run = tmp_path / "run"
    log = imagelog.open(run, select="changed")
    for _ in range(30):
        log.log(frame.copy(), source="cam")
    log.flush()
    want = log.stats()["not_selected"]
    assert want == 29
    assert summarise(imagelog.read(run))["not_selected"] == want  # from the lines
    log.close()
    assert list((run / "index").glob("*.summary.json"))
    assert summarise(imagelog.read(run))["not_selected"] == want  # from the summary
    assert main(["stats", str(run)]) == 0
    assert f"{want} not selected" in capsys.readouterr().out

"""imagelog.ray on a local Ray cluster: the same records and the same pixels as the local reader."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import require

import imagelog
from imagelog.compact import compact
from imagelog.ids import uuid7
from imagelog.logger import ImageLog
from imagelog.record import dumps
from imagelog.samples import CameraSimulator, depth_frame
from imagelog.settings import Settings
from imagelog.stores import make_store

START_NS = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
HOUR = 3600 * 10**9
FORMATS = ("png", "jxl", "jpeg", "png16", "npy")

# Ray warns about its own deprecated settings when its context is made
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        ray = None
    require(ray is not None, "ray is not installed (pip install 'imagelog[ray]')")
    return ray


@pytest.fixture(name="ray_cluster", scope="module")
def _ray_cluster() -> Iterator[Any]:
    """A small local Ray (2 CPUs, 200 MB object store), shut down after the module."""
    ray = _ray()
    ray.init(
        num_cpus=2,
        object_store_memory=200 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()


def write_fleet_run(path: str, storage_options: dict[str, Any] | None = None) -> None:
    """Three hours of two writers (injected clock): 8-bit PNG, JPEG XL, JPEG, 16-bit PNG and
    float .npy frames; a drop, and a partial purge (in the open hour) of a compacted image."""
    cam = CameraSimulator(40, 30, seed=11)
    clock = [START_NS]
    for w in range(2):
        store = make_store(path, storage_options=storage_options)
        settings = Settings.from_kwargs(format="png")
        with ImageLog(store, settings, clock=lambda: clock[0]) as log:
            for i in range(15):
                clock[0] = START_NS + i * HOUR // 5 + w * 1000
                kind = FORMATS[i % len(FORMATS)]
                if kind == "png16":
                    frame, fmt = (depth_frame(40, 30) + i).astype(np.uint16), "png"
                elif kind == "npy":
                    frame, fmt = depth_frame(40, 30).astype(np.float32) / (i + 1), "npy"
                else:
                    frame, fmt = cam.frame(), kind
                log.log(frame, source=f"cam{w}", format=fmt, i=i, kind=kind)
    run = imagelog.read(path, storage_options=storage_options)
    recs = list(run.records())
    last = [k for k in run.store.list("index/") if k.key.endswith(".jsonl")][-1].key
    drop = copy.deepcopy(recs[-1])
    drop.pop("file")
    drop["event"].update(action="dropped", reason="queue_full", outcome="failure")
    drop["image"]["id"] = uuid7()
    purge = copy.deepcopy(recs[-1])
    purge.pop("file")
    purge.pop("image")
    purge["event"].update(action="purged", id=uuid7(), reason="max_bytes")
    purge["imagelog"]["purge"] = {"ids": [recs[1]["image"]["id"]], "whole": False}
    data = run.store.get(last) + (dumps(drop) + "\n" + dumps(purge) + "\n").encode()
    run.store.put(last, data)
    report = compact(run.store, now_ns=START_NS + 2 * HOUR + 30 * 60 * 10**9)
    assert [c.hour for c in report.compacted] == ["2024-01-01T00"] * 2 + ["2024-01-01T01"] * 2


@pytest.fixture(name="run_path", scope="module")
def _run_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("fleet") / "run")
    write_fleet_run(path)
    return path


def rows_by_id(ds: Any) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in ds.take_all()}


def check_same_as_local(run: imagelog.Run, ds: Any, **filters: Any) -> dict[str, dict[str, Any]]:
    """The Dataset holds the records the local reader yields (ids, records, columns)."""
    got = rows_by_id(ds)
    want = {r["image"]["id"]: r for r in run.records(**filters)}
    assert set(got) == set(want)
    for rid, rec in want.items():
        row = got[rid]
        assert json.loads(row["record"]) == rec
        assert row["path"] == rec["file"]["path"]
        assert row["uri"] == f"{run.url}/{rec['file']['path']}"
        assert row["width"] == rec["image"]["width"] and row["format"] == rec["image"]["format"]
    return got


def test_read_run_equals_the_local_reader(ray_cluster: Any, run_path: str) -> None:
    """Every record, one block per hour, compacted and open hours, purge and events rules."""
    import imagelog.ray

    run = imagelog.read(run_path)
    ds = imagelog.ray.read_run(run_path)
    assert ds.columns() == list(imagelog.ray.COLUMNS_OUT)
    assert ds.materialize().num_blocks() == 3  # one read task per index hour
    got = check_same_as_local(run, ds)
    assert len(got) == 29  # 30 logged, one purged
    events = rows_by_id(imagelog.ray.read_run(run_path, include_events=True))
    assert {r["action"] for r in events.values()} == {"logged", "dropped", "purged"}
    local = run.query("select id, ts, created, bytes from records").fetchall()
    assert {(i, ts, c, b) for i, ts, c, b in local} == {
        (r["id"], r["ts"], r["created"], r["bytes"]) for r in events.values()
    }


def test_filters_are_the_records_engines(ray_cluster: Any, run_path: str) -> None:
    import imagelog.ray

    run = imagelog.read(run_path)
    where = "(meta->>'$.i')::int % 3 = 0 and width = 40"
    check_same_as_local(run, imagelog.ray.read_run(run_path, where=where), where=where)
    ds = imagelog.ray.read_run(run_path, source="cam1", since="2024-01-01T01:00:00Z")
    check_same_as_local(run, ds, source="cam1", since="2024-01-01T01:00:00Z")
    picked = imagelog.ray.read_run(run_path, columns=["id", "uri"])
    assert picked.columns() == ["id", "uri"] and picked.count() == 29
    with pytest.raises(ValueError, match="unknown column"):
        imagelog.ray.read_run(run_path, columns=["id", "widht"])
    with pytest.raises(Exception, match="where 'widht > 1'"):
        imagelog.ray.read_run(run_path, where="widht > 1")
    with pytest.raises(ValueError, match="since"):
        imagelog.ray.read_run(run_path, since="yesterday")
    with pytest.raises(imagelog.errors.RunNotFound):
        imagelog.ray.read_run(run_path + "-typo")


def test_load_images_gives_run_load_pixels(ray_cluster: Any, run_path: str) -> None:
    """JPEG XL, 16-bit PNG, float .npy and JPEG decoded in the workers equal ``Run.load``."""
    import imagelog.ray

    run = imagelog.read(run_path)
    kinds = set()
    total = 0
    for dtype in ("uint8", "uint16", "float32"):
        ds = imagelog.ray.read_run(run_path, where=f"dtype = '{dtype}'").map_batches(
            imagelog.ray.load_images, batch_size=4, batch_format="numpy"
        )
        for row in ds.take_all():
            rec = json.loads(row["record"])
            want = run.load(rec)
            got = np.asarray(row["image"])
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got, want)
            kinds.add((rec["image"]["format"], str(want.dtype)))
            total += 1
    assert total == 29
    assert {("jxl", "uint8"), ("jpeg", "uint8"), ("png", "uint16"), ("npy", "float32")} <= kinds
    mixed = imagelog.ray.read_run(run_path).map_batches(
        imagelog.ray.load_images, batch_size=8, batch_format="numpy"
    )
    with pytest.raises(Exception, match="mixes image dtypes"):
        mixed.take_all()


def test_load_images_missing_and_outside(ray_cluster: Any, tmp_path: Path) -> None:
    """A missing image fails with its id, or is left out with ``missing="skip"``; a record
    whose path leaves the run gets no URI and is never read."""
    import imagelog.ray

    path = tmp_path / "run"
    with imagelog.open(path, format="png") as log:
        for i in range(3):
            log.log(np.full((4, 4), i, np.uint8), source="cam")
    run = imagelog.read(path)
    recs = list(run.records())
    (path / recs[0]["file"]["path"]).unlink()
    (segment,) = (path / "index").glob("*.jsonl")
    outside = copy.deepcopy(recs[2])
    outside["image"]["id"] = uuid7()
    outside["file"]["path"] = "../secret.png"
    (tmp_path / "secret.png").write_bytes((path / recs[2]["file"]["path"]).read_bytes())
    with segment.open("a") as fh:
        fh.write(dumps(outside) + "\n")
    ds = imagelog.ray.read_run(str(path))
    uris = {r["id"]: r["uri"] for r in ds.take_all()}
    assert uris[outside["image"]["id"]] is None
    with pytest.raises(Exception, match=recs[0]["image"]["id"]):
        ds.map_batches(imagelog.ray.load_images, batch_format="numpy").take_all()
    kept = ds.map_batches(
        imagelog.ray.load_images, batch_format="numpy", fn_kwargs={"missing": "skip"}
    ).take_all()
    assert sorted(int(np.asarray(r["image"])[0, 0]) for r in kept) == [1, 2]


def _tar_ids(folder: Path) -> list[str]:
    import tarfile

    ids = []
    for shard in sorted(folder.rglob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            ids += [m.name.split(".")[0] for m in tar.getmembers() if m.name.endswith(".json")]
    return ids


def test_ray_export_equals_the_local_export(
    ray_cluster: Any, run_path: str, tmp_path: Path
) -> None:
    """One task per hour: the same samples, conversions and gaps as ``export``; an interrupted
    hour resumes and finished hours are left as they are."""
    import imagelog.ray
    from imagelog.export import export

    run = imagelog.read(run_path)
    want = export(run, tmp_path / "local", to="webdataset")
    got = imagelog.ray.export(run_path, tmp_path / "ray", to="webdataset")
    assert (got.samples, got.converted, got.gaps) == (want.samples, want.converted, want.gaps)
    assert sorted(_tar_ids(tmp_path / "ray")) == sorted(_tar_ids(tmp_path / "local"))
    gaps = sorted((tmp_path / "ray" / "gaps.jsonl").read_text().splitlines())
    assert gaps == sorted((tmp_path / "local" / "gaps.jsonl").read_text().splitlines())
    parts = sorted(p.name for p in (tmp_path / "ray").glob("hour=*"))
    assert parts == ["hour=2024-01-01T00", "hour=2024-01-01T01", "hour=2024-01-01T02"]
    # an interrupted hour: its export.json says incomplete, its shard is gone
    first = tmp_path / "ray" / parts[0]
    kept = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray" / parts[1]).rglob("*")}
    state = json.loads((first / "export.json").read_text())
    (first / "export.json").write_text(json.dumps({**state, "complete": False}))
    for shard in first.glob("shard-*.tar"):
        shard.unlink()
    again = imagelog.ray.export(run_path, tmp_path / "ray", to="webdataset")
    assert (again.samples, again.gaps) == (want.samples, want.gaps)
    assert sorted(_tar_ids(tmp_path / "ray")) == sorted(_tar_ids(tmp_path / "local"))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ray" / parts[1]).rglob("*")} == kept
    with pytest.raises(ValueError, match="holds another export"):
        imagelog.ray.export(run_path, tmp_path / "ray", to="imagefolder")
    with pytest.raises(ValueError, match="unknown export target"):
        imagelog.ray.export(run_path, tmp_path / "other", to="tarball")


def test_cli_export_engine_ray(
    ray_cluster: Any, run_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imagelog.cli import main

    out = tmp_path / "out"
    args = ["export", run_path, str(out), "--to", "imagefolder", "--engine", "ray", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 29 and report["gaps"] == {"dropped": 1, "purged": 1}
    rows = [
        json.loads(line)
        for part in sorted(out.glob("hour=*"))
        for line in (part / "metadata.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 29 and all((out / r["file_name"]).exists() is False for r in rows)
    assert all((out / f"hour={r['created'][:13]}" / r["file_name"]).is_file() for r in rows)


def test_load_images_refuses_what_it_cannot_use() -> None:
    """Without ``uri`` and ``record`` (``columns=`` left them out), or with a typo in
    ``missing``, one line says what is wrong."""
    import imagelog.ray

    batch = {"id": np.array(["a"]), "record": np.array(["{}"])}
    with pytest.raises(ValueError, match="needs the 'uri' and 'record' columns"):
        imagelog.ray.load_images(batch)
    with pytest.raises(ValueError, match="missing must be 'raise' or 'skip'"):
        imagelog.ray.load_images({**batch, "uri": np.array([None])}, missing="ignore")
    from imagelog.fleet import load_pixels

    with pytest.raises(FileNotFoundError, match="has no image inside the run"):
        load_pixels(None, '{"image": {"id": "x"}, "file": {"path": "../x.png"}}')


def test_a_run_without_records_is_an_empty_dataset(ray_cluster: Any, tmp_path: Path) -> None:
    import imagelog.ray

    with imagelog.open(tmp_path / "run", format="png"):
        pass
    ds = imagelog.ray.read_run(str(tmp_path / "run"))
    assert ds.count() == 0 and ds.columns() == list(imagelog.ray.COLUMNS_OUT)


def test_read_run_sees_the_current_file_of_a_tiered_frame(ray_cluster: Any, tmp_path: Path) -> None:
    """Retention tiers: Ray reads each frame's current file (the records engine's rule), and
    thinned frames are gone, as the local reader has them."""
    from tests.test_tiers import DAY, LADDER, T0, make_run

    import imagelog.ray
    from imagelog.stores import make_store
    from imagelog.tiers import ladders_of, run_pass

    url = str(tmp_path / "run")
    make_run(url, n=10)
    run_pass(make_store(url), ladders_of(LADDER), now_ns=T0 + 8 * DAY)
    run = imagelog.read(url)
    got = check_same_as_local(run, imagelog.ray.read_run(url))
    assert len(got) == 2 and {r["format"] for r in got.values()} == {"jxl", "jpeg"}

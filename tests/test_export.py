"""Export to training data sets, read back with the real datasets and webdataset packages."""

from __future__ import annotations

import copy
import json
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog.cli import main
from imagelog.export import export
from imagelog.ids import uuid7
from imagelog.record import dumps
from imagelog.samples import CameraSimulator, depth_frame


@pytest.fixture(autouse=True)
def _offline_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """datasets works offline, with its cache in the test's folder."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(name="run", scope="module")
def _run(tmp_path_factory: pytest.TempPathFactory) -> imagelog.Run:
    """PNG, lossless JPEG XL, JPEG and float32 frames; a drop, a purge and a missing file."""
    path = tmp_path_factory.mktemp("export") / "run"
    cam = CameraSimulator(64, 48, seed=5)
    with imagelog.open(path) as log:
        for i in range(3):
            log.log(cam.frame(), source="rgb", format="png", i=i)
            log.log(cam.frame(), source="jxl", format="jxl", i=i)
            log.log(cam.frame(), source="jpg", format="jpeg", i=i)
            log.log(depth_frame(64, 48).astype(np.float32) + i, source="depth", format="npy", i=i)
    run = imagelog.read(path)
    recs = list(run.records())
    (segment,) = (path / "index").glob("*.jsonl")
    drop = copy.deepcopy(recs[0])
    drop.pop("file")
    drop["event"].update(action="dropped", reason="queue_full", outcome="failure")
    drop["image"]["id"] = uuid7()
    purge = copy.deepcopy(recs[0])
    purge.pop("file")
    purge.pop("image")
    purge["event"].update(action="purged", id=uuid7(), reason="max_bytes")
    purge["imagelog"]["purge"] = {"ids": [recs[1]["image"]["id"]], "whole": False}
    with segment.open("a") as fh:
        fh.write(dumps(drop) + "\n" + dumps(purge) + "\n")
    (path / recs[2]["file"]["path"]).unlink()  # missing from storage
    return run


def expected(run: imagelog.Run) -> dict[str, dict[str, Any]]:
    """The records an export must hold: logged, not purged, file present."""
    recs = list(run.records())
    return {r["image"]["id"]: r for r in recs if (Path(run.url) / r["file"]["path"]).exists()}


def check_gaps(out: Path) -> None:
    kinds = Counter(
        json.loads(line)["kind"] for line in (out / "gaps.jsonl").read_text().splitlines()
    )
    assert kinds == {"dropped": 1, "purged": 1, "missing": 1}


def test_imagefolder_loads_with_datasets(run: imagelog.Run, tmp_path: Path) -> None:
    """datasets' imagefolder loads every image (JPEG XL and .npy converted to lossless PNG/TIFF)."""
    import datasets

    out = tmp_path / "out"
    report = export(run, out, to="imagefolder")
    want = expected(run)
    assert report.samples == len(want) == 10
    assert report.converted == {"jxl->png": 2, "npy->tif": 3}  # one JPEG XL image was purged
    check_gaps(out)
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(ds) == len(want)
    for row in ds:
        rec = want[row["id"]]
        assert json.loads(row["record"]) == rec and json.loads(row["meta"]) == rec["meta"]
        pixels = np.asarray(row["image"])
        if rec["image"]["lossless"]:
            assert np.array_equal(pixels, run.load(rec)), rec["image"]["format"]
        else:
            assert pixels.shape == (48, 64, 3)
        converted = {"jxl": "png", "npy": "tif"}.get(rec["image"]["format"])
        assert row["export_converted_from"] == (rec["image"]["format"] if converted else None)


# webdataset 1.0.2 leaves its last shard's file open for the garbage collector to close
@pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)
def test_webdataset_shards_load_with_webdataset(run: imagelog.Run, tmp_path: Path) -> None:
    """Size-bounded tar shards; keys without dots; the record beside the image; .npy kept."""
    import webdataset as wds

    out = tmp_path / "out"
    report = export(run, out, to="webdataset", shard_bytes=20_000)
    assert len(report.files) > 1 and report.converted == {"jxl->png": 2, "npy->npy": 3}
    check_gaps(out)
    want = expected(run)
    shards = [str(out / f) for f in report.files]
    seen = set()
    for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode("rgb8"):
        key = sample["__key__"]
        assert "." not in key and key in want
        rec = want[key]
        doc = sample["json"]
        assert {k: v for k, v in doc.items() if k != "export"} == rec
        image = next(v for k, v in sample.items() if k in ("png", "jpg", "npy"))
        if rec["image"]["lossless"]:
            assert np.array_equal(image, run.load(rec))
        seen.add(key)
    assert seen == set(want)


def test_parquet_is_a_hugging_face_image_feature(run: imagelog.Run, tmp_path: Path) -> None:
    """The parquet target loads with datasets as an Image feature, pixel-exact where lossless."""
    import datasets

    out = tmp_path / "out"
    export(run, out, to="parquet")
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    want = expected(run)
    assert sorted(ds["id"]) == sorted(want)
    for row in ds:
        rec = want[row["id"]]
        if rec["image"]["lossless"]:
            assert np.array_equal(np.asarray(row["image"]), run.load(rec))


@pytest.mark.parametrize("to", ["imagefolder", "webdataset", "parquet"])
def test_interrupted_export_resumes(run: imagelog.Run, tmp_path: Path, to: str) -> None:
    """An export stopped midway finishes on the next run: every record once, none rewritten."""
    out = tmp_path / "out"

    def stop_after_six(done: int, total: int) -> None:
        if done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export(run, out, to=to, shard_bytes=8_000, progress=stop_after_six, workers=1)
    report = export(run, out, to=to, shard_bytes=8_000)
    assert report.skipped > 0 and report.skipped + report.samples == 10
    if to == "imagefolder":
        ids = [json.loads(x)["id"] for x in (out / "metadata.jsonl").read_text().splitlines()]
    elif to == "webdataset":
        ids = []
        for shard in sorted(out.glob("*.tar")):
            with tarfile.open(shard) as tar:
                ids += [m.name.split(".")[0] for m in tar.getmembers() if m.name.endswith(".json")]
    else:
        import pyarrow.parquet as pq

        ids = pq.read_table(out / "data").column("id").to_pylist()
    assert sorted(ids) == sorted(expected(run)) and not list(out.rglob("*.part"))


def test_cli_export_jpeg_and_refusals(
    run: imagelog.Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--image-format jpeg converts every 8-bit image; a foreign folder or target is refused."""
    out = tmp_path / "out"
    assert main(["export", run.url, str(out), "--to", "imagefolder", "--image-format", "jpeg",
                 "--source", "rgb", "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["converted"] == {"png->jpg": 3} and report["samples"] == 3
    assert main(["export", run.url, str(out), "--to", "parquet"]) == 1
    assert "holds another export" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    assert main(["export", run.url, str(tmp_path / "other"), "--to", "parquet"]) == 1
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown export target"):
        export(run, tmp_path / "new", to="zip")


@pytest.mark.parametrize(
    "bad",
    [
        {"where": "bogus ="},
        {"where": "no_such_column = 1"},
        {"since": "yesterday"},
        {"until": "2026-13-45"},
    ],
)
def test_failed_export_creates_nothing_and_the_retry_runs(
    run: imagelog.Run, tmp_path: Path, bad: dict[str, str]
) -> None:
    """Bad SQL or a bad time fails before the folder exists; the corrected export then runs."""
    out = tmp_path / "out"
    with pytest.raises(Exception, match=r"(?i)error|time"):
        export(run, out, to="parquet", **bad)
    assert not out.exists()
    out.mkdir()
    with pytest.raises(Exception, match=r"(?i)error|time"):
        export(run, out, to="parquet", **bad)
    assert list(out.iterdir()) == []
    assert export(run, out, to="parquet").samples == len(expected(run))


def test_an_export_that_wrote_nothing_takes_other_arguments(
    run: imagelog.Run, tmp_path: Path
) -> None:
    """An export interrupted before its first sample leaves a folder any export may take over;
    one that wrote samples refuses other arguments, naming them without quote clutter."""
    out = tmp_path / "out"

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export(run, out, to="parquet", source="jxl", progress=stop)
    assert (out / "export.json").exists()
    report = export(run, out, to="parquet", source="rgb")
    assert report.samples == sum(1 for r in expected(run).values() if r["image"]["source"] == "rgb")
    with pytest.raises(ValueError, match="holds another export") as err:
        export(run, out, to="parquet", source="jxl")
    assert "source=rgb" in str(err.value) and "'" not in str(err.value)


@pytest.mark.parametrize("target", ["png", "tiff"])
@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((1080, 1920, 3), np.uint8),
        ((61, 97), np.uint8),
        ((40, 50, 4), np.uint8),
        ((61, 97), np.uint16),
        ((33, 35), np.bool_),
    ],
)
def test_fast_conversions_are_exact_for_pillow(
    shape: tuple[int, ...], dtype: Any, target: str
) -> None:
    """The fast PNG and TIFF settings of conversions lose nothing: Pillow reads back the same
    pixels."""
    import io

    from PIL import Image

    from imagelog.export import _encode

    rng = np.random.default_rng(4)
    if dtype == np.bool_:
        arr = rng.integers(0, 2, shape).astype(bool)
    else:
        arr = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
        arr[: shape[0] // 2] //= 7  # smooth and noisy rows both
    data, ext = _encode(arr, target)
    assert ext == {"png": "png", "tiff": "tif"}[target]
    with Image.open(io.BytesIO(data)) as im:
        back = np.asarray(im)
    want = arr.astype(np.uint8) if dtype == np.bool_ else arr
    assert back.dtype == want.dtype and np.array_equal(back, want)


def test_export_image_format_tiff(run: imagelog.Run, tmp_path: Path) -> None:
    """``--image-format tiff``: every 8/16-bit image as zstd TIFF that Pillow reads exactly."""
    from PIL import Image

    report = export(run, tmp_path / "out", to="imagefolder", image_format="tiff")
    assert report.converted == {"png->tif": 3, "jxl->tif": 2, "jpeg->tif": 2, "npy->tif": 3}
    for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines():
        row = json.loads(line)
        with Image.open(tmp_path / "out" / row["file_name"]) as im:
            back = np.asarray(im)
        if row["format"] in ("png", "jxl"):
            assert np.array_equal(back, run.load(json.loads(row["record"])))

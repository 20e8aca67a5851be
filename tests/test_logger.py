"""The public contract: log/flush/close/stats, records and round trips through every format."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import imagelog
from imagelog.samples import CameraSimulator


def _only(run_dir: Path) -> tuple[imagelog.Run, dict[str, Any]]:
    run = imagelog.read(run_dir)
    recs = list(run.records())
    assert len(recs) == 1
    return run, recs[0]


class TestRoundTrip:
    @pytest.mark.parametrize("fmt", ["lossless", "png", "webp", "tiff", "jxl", "archive"])
    def test_lossless_rgb_is_pixel_exact(
        self, run_dir: Path, rgb: np.ndarray[Any, Any], fmt: str
    ) -> None:
        """Every lossless format gives back exactly the pixels that were logged."""
        with imagelog.open(run_dir, format=fmt) as log:
            log.log(rgb, source="cam1")
        run, rec = _only(run_dir)
        assert np.array_equal(run.load(rec), rgb)
        assert rec["image"]["lossless"] is True

    @pytest.mark.parametrize("fmt", ["lossless", "png", "tiff", "jxl"])
    def test_16_bit_depth_is_exact(
        self, run_dir: Path, depth16: np.ndarray[Any, Any], fmt: str
    ) -> None:
        """16-bit depth frames round-trip exactly in 16-bit PNG, TIFF and JPEG XL."""
        with imagelog.open(run_dir, format=fmt) as log:
            log.log(depth16, source="depth")
        run, rec = _only(run_dir)
        out = run.load(rec)
        assert out.dtype == np.uint16
        assert np.array_equal(out, depth16)

    @pytest.mark.parametrize(
        ("shape", "dtype"),
        [
            ((60, 80), np.uint8),
            ((60, 80, 4), np.uint8),
            ((60, 80, 3), np.uint16),
            ((60, 80), bool),
            ((60, 80), np.float32),
        ],
    )
    def test_every_dtype_and_layout(
        self, run_dir: Path, rgb: np.ndarray[Any, Any], shape: tuple[int, ...], dtype: Any
    ) -> None:
        """Gray, RGBA, 16-bit RGB, bool masks and float32 all come back exactly (default preset)."""
        base = rgb[:60, :80]
        if dtype is bool:
            frame = base[..., 0] > 128
        elif dtype is np.float32:
            frame = base[..., 0].astype(np.float32) / 255.0
        elif len(shape) == 2:
            frame = base[..., 1].copy()
        elif shape[2] == 4:
            frame = np.dstack([base, base[..., :1]])
        else:
            frame = base.astype(np.uint16) * 257
        with imagelog.open(run_dir) as log:
            log.log(frame)
        run, rec = _only(run_dir)
        out = run.load(rec)
        assert out.dtype == frame.dtype
        assert np.array_equal(out, frame)

    def test_jpeg_is_close_and_marked_lossy(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """JPEG (the preview preset) is lossy: close to the input, and recorded as such."""
        with imagelog.open(run_dir, format="preview") as log:
            log.log(rgb)
        run, rec = _only(run_dir)
        out = run.load(rec).astype(np.float64)
        psnr = 10 * np.log10(255**2 / np.mean((out - rgb) ** 2))
        assert psnr > 30
        assert rec["image"]["lossless"] is False
        assert rec["image"]["format"] == "jpeg"
        assert rec["image"]["encoder"]["params"] == {"quality": 90}

    def test_camera_jpeg_passes_through_untouched(
        self, run_dir: Path, rgb: np.ndarray[Any, Any]
    ) -> None:
        """Encoded JPEG bytes are stored byte for byte; size and EXIF go into the record."""
        exif = Image.Exif()
        exif[0x010F] = "ACME"  # Make
        exif[0x0110] = "Cam-3000"  # Model
        exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"  # DateTimeOriginal
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=80, exif=exif)
        data = buf.getvalue()
        with imagelog.open(run_dir) as log:
            log.log(data, source="cam1")
        run, rec = _only(run_dir)
        assert run.read_bytes(rec) == data
        assert rec["image"]["encoder"]["name"] == "passthrough"
        assert (rec["image"]["width"], rec["image"]["height"]) == (rgb.shape[1], rgb.shape[0])
        assert rec["exif"]["Make"] == "ACME"
        assert rec["exif"]["Model"] == "Cam-3000"
        assert rec["@timestamp"].startswith("2024-05-0")  # capture time from EXIF
        assert rec["event"]["created"] > rec["@timestamp"]

    def test_bgr_frames_are_stored_as_rgb(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """An OpenCV BGR frame is stored as RGB and the record says it was converted."""
        with imagelog.open(run_dir, format="png") as log:
            log.log(np.ascontiguousarray(rgb[..., ::-1]), channel_order="BGR")
        run, rec = _only(run_dir)
        assert np.array_equal(run.load(rec), rgb)
        assert rec["image"]["converted_from"] == "BGR"

    def test_raw_bytes_as_the_seed_logged_them(
        self, run_dir: Path, rgb: np.ndarray[Any, Any]
    ) -> None:
        """Raw RGB bytes with size=(w, h), the seed's Image.frombytes input, round-trip."""
        small = np.ascontiguousarray(rgb[:128, :128])
        with imagelog.open(run_dir) as log:
            log.log(small.tobytes(), size=(128, 128), mode="RGB")
        run, rec = _only(run_dir)
        assert np.array_equal(run.load(rec), small)

    def test_pil_image_input(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """A PIL image round-trips."""
        with imagelog.open(run_dir) as log:
            log.log(Image.fromarray(rgb))
        run, rec = _only(run_dir)
        assert np.array_equal(run.load(rec), rgb)


class TestRecord:
    def test_fields_and_metadata(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """The record carries the contract's fields; extra keywords become meta."""
        with imagelog.open(run_dir, format="lossless", on_full="block") as log:
            rid = log.log(rgb, source="cam1", message="defect on belt", labels={"line": "3"},
                          score=0.93, defect=True)  # fmt: skip
        _run, rec = _only(run_dir)
        assert rec["image"]["id"] == rid
        assert rec["message"] == "defect on belt"
        assert rec["labels"] == {"line": "3"}
        assert rec["meta"] == {"score": 0.93, "defect": True}
        assert rec["image"]["source"] == "cam1"
        assert rec["file"]["size"] == (run_dir / rec["file"]["path"]).stat().st_size
        import hashlib

        data = (run_dir / rec["file"]["path"]).read_bytes()
        assert rec["file"]["hash"]["sha256"] == hashlib.sha256(data).hexdigest()

    def test_ecs_fields_have_ecs_types(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """Every field with an ECS name carries the ECS type and an allowed value."""
        ecs = json.loads((Path(__file__).parent / "data" / "ecs_fields.json").read_text("utf-8"))
        with imagelog.open(run_dir, max_queue_bytes=1, on_full="drop_newest") as log:
            for _ in range(5):
                log.log(rgb, labels={"n": 1})
        lines = []
        for seg in (run_dir / "index").glob("*.jsonl"):
            lines += [json.loads(x) for x in seg.read_text("utf-8").splitlines()]
        assert lines

        def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in d.items():
                name = prefix + k
                if (isinstance(v, dict) and name not in ecs) or (
                    name in ecs and ecs[name]["type"] == "object" and name != "labels"
                ):
                    out.update(flat(v, name + "."))
                else:
                    out[name] = v
            return out

        checked = 0
        for rec in lines:
            for name, value in flat(rec).items():
                spec = ecs.get(name)
                if spec is None:
                    continue
                checked += 1
                kind = spec["type"]
                if kind in ("keyword", "match_only_text", "wildcard", "constant_keyword"):
                    assert isinstance(value, str), name
                elif kind == "long":
                    assert isinstance(value, int) and not isinstance(value, bool), name
                elif kind == "date":
                    assert isinstance(value, str) and value.endswith("Z"), name
                elif kind == "object":
                    assert isinstance(value, dict) and all(
                        isinstance(v, str) for v in value.values()
                    ), name
                if "allowed" in spec:
                    assert value in spec["allowed"], (name, value)
        assert checked > 10

    def test_ids_sort_by_time(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """Record ids sort in logging order; records() yields oldest first."""
        with imagelog.open(run_dir, format="png") as log:
            ids = [log.log(rgb[:8, :8], seq_no=i) for i in range(50)]
        assert ids == sorted(ids)
        recs = list(imagelog.read(run_dir).records())
        assert [r["meta"]["seq_no"] for r in recs] == list(range(50))

    def test_captured_at_is_kept_apart_from_log_time(
        self, run_dir: Path, rgb: np.ndarray[Any, Any]
    ) -> None:
        """captured_at sets @timestamp; event.created stays the time of log()."""
        with imagelog.open(run_dir) as log:
            log.log(rgb[:8, :8], captured_at=1_700_000_000.25)
        _, rec = _only(run_dir)
        assert rec["@timestamp"] == "2023-11-14T22:13:20.250000Z"
        assert rec["event"]["created"] > "2025"

    def test_captured_at_takes_seconds_nanoseconds_and_datetimes(
        self, run_dir: Path, rgb: np.ndarray[Any, Any]
    ) -> None:
        """Unix seconds (int, float, numpy), Unix nanoseconds (int) and aware datetimes all
        give the same @timestamp."""
        import datetime as dt

        when = dt.datetime(2025, 11, 24, 16, 0, 0, 250000, tzinfo=dt.UTC)
        values = [1_764_000_000.25, np.float64(1_764_000_000.25), 1_764_000_000_250_000_000, when]
        with imagelog.open(run_dir) as log:
            for v in values:
                log.log(rgb[:8, :8], captured_at=v)
        stamps = {r["@timestamp"] for r in imagelog.read(run_dir).records()}
        assert stamps == {"2025-11-24T16:00:00.250000Z"}

    def test_metadata_up_to_the_bound_is_stored_and_read(
        self, run_dir: Path, rgb: np.ndarray[Any, Any]
    ) -> None:
        """Metadata just under MAX_RECORD_BYTES is accepted, written and read back."""
        from imagelog.inputs import MAX_RECORD_BYTES

        blob = "k" * (MAX_RECORD_BYTES - 100)
        with imagelog.open(run_dir) as log:
            log.log(rgb[:8, :8], blob=blob)
        (rec,) = imagelog.read(run_dir).records()
        assert rec["meta"]["blob"] == blob

    def test_meta_dict_holds_names_of_log_parameters(
        self, run_dir: Path, rgb: np.ndarray[Any, Any]
    ) -> None:
        """meta={...} stores any name, parameters of log() included, beside the keywords; the
        logging Handler's extra={"meta": {...}} gives the same record."""
        names = {"mode": "train", "size": 5, "copy": "yes", "level": 3, "meta": {"a": 1}}
        with imagelog.open(run_dir) as log:
            log.log(rgb[:8, :8], meta=names, epoch=2)
            lg = logging.getLogger("test_meta_dict")
            handler = imagelog.Handler(log)
            lg.addHandler(handler)
            try:
                lg.warning("x", extra={"image": rgb[:8, :8], "meta": names})
            finally:
                lg.removeHandler(handler)
        recs = list(imagelog.read(run_dir).records())
        assert recs[0]["meta"] == {**names, "epoch": 2}
        assert recs[0]["log"]["level"] == "info"
        assert recs[1]["meta"] == names
        assert recs[1]["log"]["level"] == "warning"

    def test_handler_maps_custom_levels_to_standard_ones(
        self, run_dir: Path, rgb: np.ndarray[Any, Any]
    ) -> None:
        """A custom logging level (TRACE = 5, NOTICE = 25) is stored as the standard level at or
        below it, so log.level keeps its five values."""
        with imagelog.open(run_dir) as log:
            lg = logging.getLogger("test_custom_levels")
            lg.setLevel(1)
            handler = imagelog.Handler(log)
            lg.addHandler(handler)
            try:
                for level in (5, 25, 45, 60):
                    lg.log(level, "x", extra={"image": rgb[:8, :8]})
            finally:
                lg.removeHandler(handler)
        levels = [r["log"]["level"] for r in imagelog.read(run_dir).records()]
        assert levels == ["debug", "info", "error", "critical"]


class TestBadInputLeavesTheLogUsable:
    @pytest.mark.parametrize(
        ("kwargs", "error", "words"),
        [
            ({"frame": np.zeros((4, 4, 7), np.uint8)}, ValueError, "7 channels"),
            ({"frame": np.zeros((4, 4), np.float64)}, TypeError, "float64"),
            ({"obj": object()}, TypeError, "meta.obj"),
            ({"meta": {"nan": float("nan")}}, TypeError, "JSON"),
            ({"format": "bmp9"}, ValueError, "unknown format"),
            ({"format": "jpeg", "frame": np.zeros((4, 4), np.uint16)}, ValueError, "lossless"),
            ({"format": "jpeg", "frame": np.zeros((4, 4, 4), np.uint8)}, ValueError, "4-channel"),
            ({"format": "png:speed=3"}, ValueError, "no parameter speed"),
            ({"labels": {"a": [1]}}, TypeError, "labels.a"),
            # names of log()'s parameters are its parameters: metadata of those names is refused
            # with the way to store it, never dropped or taken as the parameter
            ({"mode": "train"}, ValueError, r"meta=\{'mode': 'train'\}"),
            ({"size": 5}, ValueError, r"meta=\{'size': 5\}"),
            ({"copy": "yes"}, TypeError, r"copy must be True or False.*meta=\{'copy'"),
            ({"level": 3}, TypeError, r"level must be one of.*meta=\{'level': 3\}"),
            ({"level": "verbose"}, ValueError, "level must be one of debug, info"),
            ({"format": 3}, TypeError, r"format must be a str, not int 3"),
            ({"channel_order": 5}, TypeError, r"channel_order must be a str.*meta="),
            ({"meta": {"meta": 5, "a": 1}, "a": 2}, TypeError, "'a' given twice"),
            ({"meta": "train"}, TypeError, "meta must be a dict"),
            # captured_at: Unix seconds, Unix nanoseconds or a datetime; nothing that only
            # looks like one
            ({"captured_at": 1_764_000_000_123}, ValueError, "milliseconds"),
            ({"captured_at": 1_764_000_000_123_456}, ValueError, "microseconds"),
            ({"captured_at": 5522.25}, ValueError, "monotonic"),
            ({"captured_at": -1.0}, ValueError, "captured_at=-1.0"),
            ({"captured_at": "2026-01-01"}, TypeError, "captured_at must be a datetime"),
            # a lone surrogate (os.fsdecode of a non-UTF-8 name) cannot be written as UTF-8
            ({"path": "img\udc80.png"}, TypeError, r"meta.path holds '\\udc80'"),
            ({"source": "cam\udc80"}, TypeError, "source holds"),
            ({"labels": {"a": "\udc80"}}, TypeError, "labels.a holds"),
            ({"message": "\udcff"}, TypeError, "message holds"),
            # one record's metadata is bounded: readers take a record as one line
            ({"keypoints": list(range(300_000))}, imagelog.MetadataTooLarge, "beside the image"),
            (
                {"message": "x" * (2**20 + 1)},
                ValueError,
                r"1,048,584 bytes of JSON, over the limit of 1,048,576",
            ),
            ({"labels": {"a": "é" * 2**19}}, ValueError, "over the limit"),
            ({"source": "c" * (2**20 + 1)}, ValueError, "over the limit"),
        ],
    )
    def test_error_in_caller_thread(
        self,
        run_dir: Path,
        rgb: np.ndarray[Any, Any],
        kwargs: dict[str, Any],
        error: type,
        words: str,
    ) -> None:
        """A bad call raises in the caller's thread; frames before and after are all stored."""
        with imagelog.open(run_dir) as log:
            log.log(rgb, n=1)
            frame = kwargs.pop("frame", rgb)
            with pytest.raises(error, match=words):
                log.log(frame, **kwargs)
            log.log(rgb, n=2)
        run = imagelog.read(run_dir)
        recs = list(run.records())
        assert [r["meta"]["n"] for r in recs] == [1, 2]
        assert all(np.array_equal(run.load(r), rgb) for r in recs)

    def test_bad_settings_fail_at_open(self, run_dir: Path) -> None:
        """Settings are validated at open(), with messages that name them."""
        with pytest.raises(ValueError, match="on_full"):
            imagelog.open(run_dir, on_full="sometimes")
        with pytest.raises(ValueError, match="max_queue_bytes"):
            imagelog.open(run_dir, max_queue_bytes="lots")
        with pytest.raises(TypeError, match="unknown setting"):
            imagelog.open(run_dir, colour="red")
        with pytest.raises(ValueError, match="unknown format"):
            imagelog.open(run_dir, format="gif")

    @pytest.mark.parametrize("path", ["", "   ", "file://"])
    def test_empty_path_is_no_run(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
    ) -> None:
        """An empty path is refused by open() and read(); the current folder is left alone."""
        monkeypatch.chdir(tmp_path)
        for call in (imagelog.open, imagelog.read):
            with pytest.raises(imagelog.StoreError, match="empty path"):
                call(path)
        assert not list(tmp_path.iterdir())

    @pytest.mark.parametrize(
        ("manifest", "words"),
        [
            ('{"schema": 99, "layout": {}}', "record schema 99, newer than this imagelog's 1"),
            ("{not json", "is not JSON"),
            ('{"schema": "one"}', "no record schema"),
            ("[1, 2]", "no record schema"),
        ],
    )
    def test_run_of_a_newer_schema_or_no_manifest_is_refused(
        self, run_dir: Path, rgb: np.ndarray[Any, Any], manifest: str, words: str
    ) -> None:
        """open() refuses to append to, and read() to read, a run whose imagelog.json names a
        newer schema or is not a manifest; nothing in the run changes."""
        with imagelog.open(run_dir) as log:
            log.log(rgb[:8, :8])
        (run_dir / "imagelog.json").write_text(manifest, encoding="utf-8")
        before = sorted((p, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file())
        for call in (imagelog.open, imagelog.read):
            with pytest.raises(imagelog.UnsupportedRun, match=words):
                call(run_dir)
        assert sorted((p, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()) == before

    def test_unwritable_path(self, tmp_path: Path) -> None:
        """A run path that cannot be created raises StoreError (an OSError) naming it."""
        blocker = tmp_path / "file"
        blocker.write_text("x", encoding="utf-8")
        with pytest.raises(OSError, match="cannot create run folder"):
            imagelog.open(blocker / "run")

    def test_closed_log_refuses(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """Logging to a closed log is a RuntimeError; close() is idempotent."""
        log = imagelog.open(run_dir)
        log.close()
        log.close()
        with pytest.raises(RuntimeError, match="closed"):
            log.log(rgb)


class TestLifecycle:
    def test_flush_makes_everything_durable(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """After flush(), every frame logged before it has its file and its index line."""
        log = imagelog.open(run_dir)
        for _ in range(20):
            log.log(rgb)
        assert log.flush(timeout=60)
        assert len(list(imagelog.read(run_dir).records())) == 20
        st = log.stats()
        assert st["written"] == 20
        assert st["queue_bytes"] == 0
        assert st["queue_frames"] == 0
        log.close()

    def test_module_level_init_and_log(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """imagelog.init(path) then imagelog.log(frame) for scripts."""
        log = imagelog.init(run_dir)
        imagelog.log(rgb, source="script")
        log.close()
        assert [r["image"]["source"] for r in imagelog.read(run_dir).records()] == ["script"]

    def test_per_source_formats(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """formats={source: spec} picks the format per source; format= per call wins."""
        with imagelog.open(run_dir, formats={"monitor": "preview"}) as log:
            log.log(rgb, source="train")
            log.log(rgb, source="monitor")
            log.log(rgb, source="monitor", format="png:level=3")
        fmts = [
            (r["image"]["source"], r["image"]["format"]) for r in imagelog.read(run_dir).records()
        ]
        assert fmts == [("train", "jxl"), ("monitor", "jpeg"), ("monitor", "png")]

    def test_stats_counts_by_source(self, run_dir: Path, camera: CameraSimulator) -> None:
        """stats() counts logged/written per source."""
        with imagelog.open(run_dir) as log:
            for i in range(6):
                log.log(camera.frame(), source=f"cam{i % 2}")
        st = log.stats()
        assert st["logged"] == st["written"] == 6
        assert st["by_source"]["cam0"]["written"] == 3
        assert st["bytes_written"] > 0


class TestHandler:
    def test_logging_bridge(self, run_dir: Path, rgb: np.ndarray[Any, Any]) -> None:
        """logger.info("hello %s", x, extra={"image": frame}) writes message and level."""
        log = imagelog.open(run_dir)
        lg = logging.getLogger("test.bridge")
        lg.setLevel(logging.DEBUG)
        handler = imagelog.Handler(log)
        lg.addHandler(handler)
        try:
            lg.info(
                "hello %s", "world", extra={"image": rgb, "labels": {"k": "v"}, "meta": {"x": 1}}
            )
            lg.warning("no image here")
            lg.error("bad part", extra={"image": rgb, "source": "cam9"})
        finally:
            lg.removeHandler(handler)
            log.close()
        recs = list(imagelog.read(run_dir).records())
        assert [(r["message"], r["log"]["level"], r["image"]["source"]) for r in recs] == [
            ("hello world", "info", "test.bridge"),
            ("bad part", "error", "cam9"),
        ]
        assert recs[0]["labels"] == {"k": "v"}
        assert recs[0]["meta"] == {"x": 1}


def test_passthrough_records_whether_the_bytes_are_lossless(run_dir: Path, rgb: Any) -> None:
    """WebP bytes passed through say lossless only when their bitstream is VP8L; JPEG never."""
    import imagecodecs

    small = np.ascontiguousarray(rgb[:64, :64])
    given = {
        "webp-lossless": bytes(imagecodecs.webp_encode(small, lossless=True)),
        "webp-lossy": bytes(imagecodecs.webp_encode(small, level=80, lossless=False)),
        "jpeg": bytes(imagecodecs.jpeg8_encode(small, level=90)),
        "png": bytes(imagecodecs.png_encode(small)),
    }
    with imagelog.open(run_dir) as log:
        for name, data in given.items():
            log.log(data, source=name)
    got = {r["image"]["source"]: r["image"] for r in imagelog.read(run_dir).records()}
    assert {k: (v["format"], v["lossless"]) for k, v in got.items()} == {
        "webp-lossless": ("webp", True),
        "webp-lossy": ("webp", False),
        "jpeg": ("jpeg", False),
        "png": ("png", True),
    }


def test_get_finds_by_id_prefix_and_names_what_is_missing(run_dir: Path, rgb: Any) -> None:
    """Run.get() takes a unique id prefix; an unknown id raises RecordNotFound, a KeyError."""
    with imagelog.open(run_dir, format="png") as log:
        rid = log.log(rgb, source="cam1")
    run = imagelog.read(run_dir)
    assert run.get(rid[:13])["image"]["id"] == rid
    with pytest.raises(imagelog.RecordNotFound, match="no record with id 'ffffffff'") as err:
        run.get("ffffffff")
    assert isinstance(err.value, KeyError)

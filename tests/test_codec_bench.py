"""`imagelog bench` and bench/codecs.py, run in-process on tiny frames (nothing here is timed)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imagelog import cli, codec_bench

ROOT = Path(__file__).resolve().parents[1]


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_codecs", ROOT / "bench" / "codecs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_codecs"] = module
    spec.loader.exec_module(module)
    return module


def _bench_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert cli.main(["bench", "--seconds", "0", "--json", *args]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


class TestBenchCommand:
    def test_measures_every_codec_for_the_frame(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Every codec that takes 8-bit RGB is measured; lossless ones decode exactly."""
        data = _bench_json(capsys, "--size", "40x24", "--fps", "15")
        assert (data["width"], data["height"], data["dtype"], data["channels"]) == (
            40,
            24,
            "uint8",
            3,
        )
        specs = {r["spec"] for r in data["codecs"]}
        assert set(codec_bench.candidates_for("uint8", 3)) == specs
        for r in data["codecs"]:
            assert r["error"] is None
            assert r["fps"] > 0
            assert r["bytes_per_frame"] > 0
            assert r["keeps_up"] is (r["fps_all_cores"] >= 15)
            assert r["exact"] is (True if r["lossless"] else None)
        jxl = next(r for r in data["codecs"] if r["spec"] == "jxl:effort=1")
        assert "lossless" in jxl["presets"]

    def test_uint16_measures_only_codecs_that_take_it(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A 16-bit frame is measured with 16-bit codecs only (no JPEG, QOI or WebP)."""
        data = _bench_json(capsys, "--size", "32x16", "--dtype", "uint16")
        names = {r["codec"] for r in data["codecs"]}
        assert data["channels"] == 1
        assert {"jxl", "png", "tiff", "npy"} <= names
        assert not names & {"jpeg", "qoi", "webp", "avif"}

    def test_user_image_and_chosen_formats(
        self, tmp_path: Path, rgb: np.ndarray[Any, Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--image measures the user's own image; --format limits the formats measured."""
        path = tmp_path / "mine.png"
        Image.fromarray(rgb[:30, :20]).save(path)
        data = _bench_json(capsys, "--image", str(path), "--format", "qoi", "--format", "png")
        assert (data["width"], data["height"]) == (20, 30)
        assert [r["spec"] for r in data["codecs"]] == ["qoi", "png"]

    def test_table_output(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without --json a table names each format and whether it keeps up."""
        assert cli.main(["bench", "--size", "16x16", "--seconds", "0", "--format", "qoi"]) == 0
        out = capsys.readouterr().out
        assert "qoi" in out
        assert "keeps up with 30 fps" in out

    def test_bad_size_is_a_usage_error(self) -> None:
        """--size must be WIDTHxHEIGHT: exit status 2."""
        assert cli.main(["bench", "--size", "big"]) == 2


class TestBenchModule:
    def test_run_table_and_chart(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """run() gives JSON-able rows per frame set; table() is Markdown; chart() writes a PNG."""
        mod = _bench_module()
        monkeypatch.setattr(mod, "SETS", (("rgb1080", "tiny RGB", 24, 16, "uint8"),
                                          ("depth1080", "tiny depth", 24, 16, "uint16")))  # fmt: skip
        monkeypatch.setattr(mod, "QUICK_SECONDS", 0.0)
        monkeypatch.setattr(mod, "GIL_SECONDS", 0.0)
        results = mod.run(quick=True)
        json.dumps(results)
        assert set(results["sets"]) == {"rgb1080", "depth1080"}
        rows = results["sets"]["rgb1080"]["rows"]
        assert {r["spec"] for r in rows} == set(
            codec_bench.candidates_for("uint8", 3, include_slow=False)
        )
        assert all(r["speedup_2_threads"] is not None for r in rows)
        md = mod.table(results)
        assert "### tiny RGB" in md
        assert md.count("| `") == len(rows) + len(results["sets"]["depth1080"]["rows"])
        png = mod.chart(results, tmp_path / "chart.png")
        with Image.open(png) as im:
            assert im.format == "PNG"
            assert im.size == (1000, 640)

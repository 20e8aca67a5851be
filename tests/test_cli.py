"""The command line: ls, stats, show (in-process), and the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog.cli import main


@pytest.fixture(name="run")
def _run(run_dir: Path, rgb: np.ndarray[Any, Any]) -> Path:
    with imagelog.open(run_dir, format="png", formats={"cam2": "preview"}) as log:
        for i in range(3):
            log.log(rgb, source="cam1", message=f"frame {i}")
        log.log(rgb, source="cam2")
    return run_dir


def test_ls_lists_recent_records(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`imagelog ls RUN --json` prints the records; the table names the sources."""
    assert main(["ls", str(run), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["image"]["source"] for r in lines] == ["cam1", "cam1", "cam1", "cam2"]
    assert main(["ls", str(run), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "cam2" in out
    assert "2 of 4 records" in out


def test_stats_counts_by_source(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`imagelog stats RUN --json` counts images and bytes by source and format."""
    assert main(["stats", str(run), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["images"] == 4
    assert s["by_source"]["cam1"]["images"] == 3
    assert s["formats"] == {"png": 3, "jpeg": 1}
    assert s["bytes"] == sum(p.stat().st_size for p in (run / "images").rglob("*.*"))


def test_show_by_id_and_open(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`imagelog show RUN ID --open DIR` prints the record and writes the image out."""
    rec = next(imagelog.read(run).records())
    rid = rec["image"]["id"]
    assert main(["show", str(run), rid[:20], "--open", str(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["image"]["id"] == rid
    out = tmp_path / Path(rec["file"]["path"]).name
    assert out.read_bytes() == (run / rec["file"]["path"]).read_bytes()


def test_show_file_reads_the_embedded_record(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`imagelog show FILE` prints the record embedded in a PNG or JPEG."""
    recs = list(imagelog.read(run).records())
    assert [r["image"]["format"] for r in recs] == ["png", "png", "png", "jpeg"]
    for rec in recs:
        assert main(["show", str(run / rec["file"]["path"])]) == 0
        embedded = json.loads(capsys.readouterr().out)
        assert embedded["image"]["id"] == rec["image"]["id"]
        assert embedded["file"]["path"] == rec["file"]["path"]


def test_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that is not a run, or an unknown id, exits 1 with a message."""
    assert main(["ls", str(tmp_path)]) == 1
    assert "no imagelog run" in capsys.readouterr().err


def test_module_entry_point(run: Path) -> None:
    """`python -m imagelog` of this interpreter (never an `imagelog` found first on PATH) runs."""
    out = subprocess.run([sys.executable, "-m", "imagelog", "stats", str(run), "--json"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(out.stdout)["images"] == 4


def test_console_script(run: Path) -> None:
    """The `imagelog` script installed beside this interpreter (this project's) runs."""
    exe = Path(sys.executable).parent / "imagelog"
    assert exe.exists(), f"no console script at {exe}: is the project installed in this venv?"
    out = subprocess.run(
        [str(exe), "stats", str(run), "--json"], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout)["images"] == 4

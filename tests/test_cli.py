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
    assert "the last 2 records" in out  # ls reads the newest hours only: no total


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


# -- the error boundary: one line, one prefix, non-zero, no traceback ----------------------------
def _one_error_line(err: str, verb: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"imagelog {verb}: "), err
    assert "Traceback" not in err
    return lines[0]


def test_errors_share_one_prefix_and_no_quote_clutter(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing id, a file that is no record, a purge without a limit: `imagelog VERB: ...`."""
    assert main(["show", str(run), "zzz"]) == 1
    line = _one_error_line(capsys.readouterr().err, "show")
    assert line.startswith("imagelog show: no record with id"), line  # not the KeyError repr
    assert not line.endswith('"')
    plain = tmp_path / "plain.png"
    plain.write_bytes(imagelog.read(run).read_bytes(next(imagelog.read(run).records()))[:8])
    assert main(["show", str(plain)]) == 1
    _one_error_line(capsys.readouterr().err, "show")
    assert main(["show", str(run)]) == 2
    _one_error_line(capsys.readouterr().err, "show")
    assert main(["purge", str(run)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # the message goes to stderr
    _one_error_line(captured.err, "purge")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["verify", "RUN", "--sample", "2"], "--sample"),
        (["verify", "RUN", "--limit", "-3"], "--limit"),
        (["ls", "RUN", "-n", "-5"], "--limit"),
        (["ls", "RUN", "-n", "99999999999999999999"], "--limit"),
        (["tail", "RUN", "-n", "x"], "--lines"),
        (["query", "RUN", "select 1", "--limit", "0"], "--limit"),
        (["compact", "RUN", "--grace", "-4000"], "--grace"),
        (["compact", "RUN", "--grace", "nan"], "--grace"),
        (["export", "RUN", "OUT", "--to", "parquet", "--since", "yesterday"], "--since"),
        (["export", "RUN", "OUT", "--to", "parquet", "--shard-size", "0"], "--shard-size"),
        (["purge", "RUN", "--older-than=-1d"], "--older-than"),
        (["purge", "RUN", "--max-bytes", "lots"], "--max-bytes"),
        (["ls", ""], "run"),
        (["ls", "RUN", "--jsn"], "--json"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], named: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse types refuse out-of-range and unparsable values (exit 2, naming the option)."""
    argv = [str(run) if a == "RUN" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err, argv[0])
    assert named in line
    assert not (tmp_path / "out").exists()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`imagelog --version` prints the installed version."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"imagelog {imagelog.__version__}"


def test_every_verb_documents_its_run_argument() -> None:
    """Each verb's help names what `run` is."""
    from imagelog.cli import build_parser

    parser = build_parser()
    for verb, sub in parser.verbs.items():
        for action in sub._actions:
            if action.dest in ("run", "target"):
                assert action.help, f"imagelog {verb}: {action.dest} has no help"


def test_unexpected_error_is_one_line_with_a_hint(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug prints one line and how to see the traceback; IMAGELOG_DEBUG=1 re-raises it."""
    import imagelog.cli as cli

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("internal\nsecond line")

    monkeypatch.setattr(cli, "summarise", boom)
    assert main(["stats", str(run)]) == 1
    line = _one_error_line(capsys.readouterr().err, "stats")
    assert "RuntimeError: internal" in line
    assert "IMAGELOG_DEBUG=1" in line
    monkeypatch.setenv("IMAGELOG_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["stats", str(run)])


def test_query_csv_dash_goes_to_stdout(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`query --csv -` writes CSV to stdout, not a file named `-`."""
    monkeypatch.chdir(tmp_path)
    sql = "select source, count(*) as n from records group by 1 order by 1"
    assert main(["query", str(run), sql, "--csv", "-"]) == 0
    assert capsys.readouterr().out.splitlines() == ["source,n", "cam1,3", "cam2,1"]
    assert not (tmp_path / "-").exists()


def test_closed_stdout_ends_quietly(run: Path) -> None:
    """`imagelog ls RUN --json | head -1`: no broken-pipe message, the SIGPIPE status."""
    for argv in (["ls", str(run), "--json"], ["tail", str(run), "--json"]):
        proc = subprocess.Popen([sys.executable, "-m", "imagelog", *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first write
        with proc.stderr:
            err = proc.stderr.read().decode()
        assert proc.wait() == 141, err
        assert err == ""


def test_show_open_converts_to_the_named_format(
    run_dir: Path, rgb: np.ndarray[Any, Any], tmp_path: Path
) -> None:
    """`show --open out.png` of a JPEG XL record writes a PNG of the same pixels; a format it
    cannot write is refused before anything is written."""
    import imagecodecs

    with imagelog.open(run_dir, format="jxl") as log:
        log.log(rgb, source="cam")
    rid = next(imagelog.read(run_dir).records())["image"]["id"]
    out = tmp_path / "out.png"
    assert main(["show", str(run_dir), rid, "--open", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(imagecodecs.png_decode(out.read_bytes()), rgb)
    assert main(["show", str(run_dir), rid, "--open", str(tmp_path / "out.bmp")]) == 2
    assert not (tmp_path / "out.bmp").exists()


def test_a_missing_extra_is_named(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A verb whose extra is not installed says which extra to install."""
    import imagelog.cli as cli

    def missing(*_: Any, **__: Any) -> Any:
        raise ModuleNotFoundError("No module named 'duckdb'", name="duckdb")

    monkeypatch.setattr(cli, "summarise", missing)
    assert main(["stats", str(run)]) == 1
    line = _one_error_line(capsys.readouterr().err, "stats")
    assert "pip install 'imagelog[query]'" in line


def test_tail_help_says_what_tail_prints(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tail -n N`: the newest N records, oldest first, as its help says."""
    from imagelog.cli import build_parser

    (lines,) = [a for a in build_parser().verbs["tail"]._actions if a.dest == "lines"]
    assert lines.help is not None and "newest" in lines.help and "oldest first" in lines.help
    assert main(["tail", str(run), "-n", "2", "--json"]) == 0
    shown = [json.loads(x)["@timestamp"] for x in capsys.readouterr().out.splitlines()]
    every = [r["@timestamp"] for r in imagelog.read(run).records(include_events=True)]
    assert shown == sorted(every)[-2:]


def test_a_bug_is_not_passed_off_as_a_user_error() -> None:
    """A KeyError or TypeError from a bug gets the traceback hint; RecordNotFound does not."""
    from imagelog.cli import describe

    assert describe(imagelog.RecordNotFound("no record with id x")) == (1, "no record with id x")
    for bug in (KeyError("file"), TypeError("unhashable type: list")):
        status, line = describe(bug)
        assert status == 1 and "unexpected" in line and "IMAGELOG_DEBUG=1" in line

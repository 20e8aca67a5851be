"""The misuse suite: every verb and public reading or maintenance function, driven from a grammar
of ordinary mistakes (issue #19).

Each mistake gets one line, ``imagelog VERB: <problem>``, naming the problem, and a non-zero exit
(2 for a usage error), with no traceback; a function raises an imagelog error or the builtin its
API promises, naming the problem. The run's bytes are hashed before and after: a mistake changes
nothing. Most cases run the CLI in-process (fast); a few run it as a subprocess for real exit
statuses and closed pipes.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imagelog
from imagelog.audit import verify
from imagelog.cli import build_parser, main
from imagelog.compact import compact
from imagelog.export import export
from imagelog.stores import make_store


@pytest.fixture(name="run", scope="module")
def _run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("misuse") / "run"
    rng = np.random.default_rng(19)
    with imagelog.open(path, format="png") as log:
        for i in range(30):
            log.log(rng.integers(0, 255, (32, 48, 3), np.uint8), source="cam", i=i)
        log.log(rng.integers(0, 255, (32, 48, 3), np.uint8), source="jxl", format="jxl")
    return path


def tree(path: Path) -> dict[str, str]:
    """Every file of a folder and the SHA-256 of its bytes."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


# -- the grammar ----------------------------------------------------------------------------------
#: What each verb needs besides its run, so that only the mistake under test is wrong.
NEEDS: dict[str, list[str]] = {
    "ls": [], "stats": [], "show": ["ID"], "view": ["--no-browser"], "purge": ["--dry-run",
    "--older-than", "7d"], "verify": [], "reindex": [], "compact": [],
    "query": ["select count(*) from records"], "export": ["OUT", "--to", "parquet"], "tail": [],
    "trigger": ["--reason", "test"], "select": ["--policy", "changed"],
    "tier": ["--dry-run", "--step", "1d:format=preview"],
}  # fmt: skip
#: Verbs whose run argument is checked here: all of them (``trigger`` on a mistyped path
#: creates nothing).
RUN_VERBS = list(NEEDS)
#: (option, bad values) per verb: negative, zero, huge, unparsable, not a number.
NUMBERS: dict[str, list[tuple[str, list[str]]]] = {
    "ls": [("--limit", ["-5", "99999999999999999999", "abc", "1.5"])],
    "tail": [("--lines", ["-5", "99999999999999999999", "abc"])],
    "query": [("--limit", ["0", "-5", "99999999999999999999", "abc"])],
    "verify": [("--sample", ["2", "-0.1", "nan", "inf", "abc"]), ("--limit", ["-3", "abc"])],
    "compact": [("--grace", ["-4000", "0", "119", "1e30", "nan", "abc"])],
    "purge": [("--older-than", ["-1d", "1x", "nan"]), ("--max-bytes", ["lots", "-5"]),
              ("--min-free", ["lots", "-5"])],
    "export": [("--shard-size", ["0", "-1", "lots"]), ("--since", ["yesterday", "2026-13-45"]),
               ("--until", ["tomorrow", "12:00 pm"])],
    "bench": [("--fps", ["0", "-1", "nan"]), ("--seconds", ["-1", "1e9"]),
              ("--size", ["0x0", "10x", "100000x100000", "abc"])],
    "trigger": [("--before", ["xyz"]), ("--after", ["xyz"]), ("--at", ["yesterday"])],
    "view": [("--port", ["99999", "-1", "abc"])],
    "select": [("--within", ["-1", "abc"]), ("--limit", ["-5", "99999999999999999999"]),
               ("--policy", ["bogus", "changed(2)", "budget(-1/hour)", ""])],
    "tier": [("--as-of", ["yesterday", "2026-13-45"]),
             ("--step", ["1d", "-1d:delete", "1d:format=bogus", "1d:thumbnail=-5", "x:delete"])],
}  # fmt: skip
#: SQL a user may get wrong, per verb that takes SQL (``tail --where``: the records engine's).
SQL: dict[str, tuple[str, ...]] = {
    "ls": ("--where",),
    "tail": ("--where",),
    "export": ("--where",),
    "query": (),
}
BAD_SQL = ["bogus =", "no_such_column = 1", "source = 'unterminated", "1 +"]
#: Options mistyped as users mistype them, per verb.
TYPOS = {"ls": "--jsno", "stats": "--jsn", "show": "--opne", "view": "--prot", "purge": "--dryrun",
         "verify": "--sampel", "reindex": "--froce", "compact": "--gracee", "query": "--cvs",
         "export": "--wehre", "tail": "--folow", "bench": "--fsp", "trigger": "--reasn",
         "select": "--polcy", "tier": "--dryrun"}  # fmt: skip


#: The subprocesses import the imagelog this test imports (whatever the working folder).
ENV = {**os.environ, "PYTHONPATH": str(Path(imagelog.__file__).parents[1])}


def fill(argv: list[str], run: Path, tmp: Path, rid: str) -> list[str]:
    names = {"RUN": str(run), "OUT": str(tmp / "out"), "ID": rid}
    return [names.get(a, a) for a in argv]


def cases() -> list[Any]:
    out: list[Any] = []
    for verb in RUN_VERBS:
        out.append(pytest.param([verb, "MISSING", *NEEDS[verb]], 1, "no imagelog run",
                                id=f"{verb}-missing-run"))  # fmt: skip
        out.append(pytest.param([verb, "FILE", *NEEDS[verb]], 1, "is a file",
                                id=f"{verb}-file-as-run"))  # fmt: skip
        out.append(pytest.param([verb, "", *NEEDS[verb]], 2, "empty", id=f"{verb}-empty-run"))
        out.append(pytest.param([verb], 2, "required", id=f"{verb}-no-run"))
    for verb, typo in TYPOS.items():
        argv = [verb, "RUN", *NEEDS[verb]] if verb != "bench" else [verb]
        out.append(pytest.param([*argv, typo], 2, "unrecognized", id=f"{verb}-typo-{typo}"))
    for verb, options in NUMBERS.items():
        argv = [verb, "RUN", *NEEDS[verb]] if verb != "bench" else [verb]
        for option, values in options:
            for value in values:
                out.append(pytest.param([*argv, f"{option}={value}"], None, option,
                                        id=f"{verb}{option}={value}"))  # fmt: skip
    for verb, options in SQL.items():
        for bad in BAD_SQL:
            if options:
                argv = [verb, "RUN", *NEEDS[verb], options[0], bad]
            else:
                argv = [verb, "RUN", f"select * from records where {bad}"]
            out.append(pytest.param(argv, 1, "error", id=f"{verb}-sql-{bad}"))
    out += [
        pytest.param(["lss", "RUN"], 2, "invalid choice", id="verb-typo"),
        pytest.param(["show", "RUN", "zzz"], 1, "no record", id="show-unknown-id"),
        pytest.param(["show", "RUN"], 2, "give RUN ID", id="show-run-without-id"),
        pytest.param(["show", "FILE"], 1, "no imagelog record", id="show-file-without-record"),
        pytest.param(["show", "RUN", "ID", "--open", "OUT.bmp"], 2, ".bmp", id="show-open-bmp"),
        pytest.param(
            ["show", "RUN", "ID", "--open", "/nonexistent/dir/x.png"],
            1,
            "No such file",
            id="show-open-missing-folder",
        ),
        pytest.param(["purge", "RUN"], 2, "--older-than", id="purge-without-a-limit"),
        pytest.param(["query", "RUN", "  ;"], 2, "empty", id="query-empty-sql"),
        pytest.param(
            ["query", "RUN", "select 1", "--csv", "a", "--json", "b"],
            2,
            "not allowed",
            id="query-two-outputs",
        ),
        pytest.param(
            ["query", "RUN", "select 1", "--parquet", "-"],
            2,
            "stdout",
            id="query-parquet-to-stdout",
        ),
        pytest.param(
            ["query", "RUN", "select 1", "--csv", "/nonexistent/dir/x.csv"],
            1,
            "nonexistent",
            id="query-csv-into-a-missing-folder",
        ),
        pytest.param(
            ["export", "RUN", "FILE", "--to", "parquet"], 1, "is a file", id="export-into-a-file"
        ),
        pytest.param(
            ["export", "RUN", "OUT", "--to", "tarball"],
            2,
            "invalid choice",
            id="export-unknown-target",
        ),
        pytest.param(
            ["export", "RUN", "OUT", "--to", "parquet", "--image-format", "gif"],
            2,
            "invalid choice",
            id="export-unknown-image-format",
        ),
        pytest.param(["bench", "--image", "MISSING"], 1, "No such file", id="bench-missing-image"),
        pytest.param(["bench", "--format", "bogus"], 1, "unknown format", id="bench-bad-format"),
    ]
    return out


def test_the_grammar_covers_every_verb() -> None:
    """A new verb must join the grammar (`imagelog --help` lists them)."""
    verbs = set(build_parser().verbs)
    assert verbs == set(NEEDS) | {"bench"}
    assert verbs == set(TYPOS)
    assert verbs <= set(NUMBERS) | {"ls", "stats", "show", "view", "reindex"}


@pytest.mark.parametrize(("argv", "status", "named"), cases())
def test_a_mistake_is_one_line_and_changes_nothing(
    argv: list[str],
    status: int | None,
    named: str,
    run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One line `imagelog VERB: ...` naming the problem, a non-zero status (2: usage), no
    traceback, nothing written to the run or beside it."""
    monkeypatch.chdir(tmp_path)  # a stray output file (`--csv -` once) would land here
    (tmp_path / "FILE").write_bytes(b"not a run\n")
    rid = next(imagelog.read(run).records())["image"]["id"]
    argv = fill(argv, run, tmp_path, rid)
    argv = [str(tmp_path / "missing") if a == "MISSING" else a for a in argv]
    argv = [str(tmp_path / "FILE") if a == "FILE" else a for a in argv]
    argv = [str(tmp_path / "out.bmp") if a.endswith("out.bmp") else a for a in argv]
    before = tree(run)
    rc = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    verb = argv[0] if argv[0] in TYPOS else ""
    prefix = f"imagelog {verb}: " if verb else "imagelog: "
    assert lines[0].startswith(prefix), lines[0]
    assert "Traceback" not in captured.err and "Error:" not in lines[0].split(": ", 1)[0]
    assert named.lower() in lines[0].lower(), lines[0]
    assert rc == status if status is not None else rc in (1, 2), (rc, lines[0])
    assert tree(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]


# -- closed pipes and real exit statuses -----------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "RUN", "--json"],
        ["ls", "RUN"],
        ["tail", "RUN", "--json", "-n", "30"],
        ["stats", "RUN", "--json"],
        ["query", "RUN", "select * from records", "--csv", "-"],
        ["show", "RUN", "ID"],
        ["--help"],
    ],
    ids=lambda a: " ".join(a),
)
def test_a_closed_stdout_ends_quietly(argv: list[str], run: Path, tmp_path: Path) -> None:
    """`imagelog ... | head -1`: no broken-pipe message; the status of a process SIGPIPE ended."""
    rid = next(imagelog.read(run).records())["image"]["id"]
    before = tree(run)
    proc = subprocess.Popen([sys.executable, "-m", "imagelog", *fill(argv, run, tmp_path, rid)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=ENV)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141), err
    assert err == ""
    assert tree(run) == before


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["ls", "MISSING"], 1),
        (["verify", "RUN", "--sample", "2"], 2),
        (["bogus"], 2),
        (["compact", "RUN", "--grace", "-4000"], 2),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else str(a),
)
def test_exit_statuses_of_the_installed_command(
    argv: list[str], status: int, run: Path, tmp_path: Path
) -> None:
    """The same one line and status from a real process (the console script's path)."""
    argv = [
        str(tmp_path / "missing") if a == "MISSING" else a for a in fill(argv, run, tmp_path, "")
    ]
    out = subprocess.run([sys.executable, "-m", "imagelog", *argv], capture_output=True, text=True,
                         cwd=tmp_path, env=ENV)  # fmt: skip
    assert out.returncode == status
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr
    assert out.stdout == ""


# -- public functions -----------------------------------------------------------------------------
def _calls(
    run: Path, tmp: Path
) -> list[tuple[str, Callable[[], object], type[BaseException], str]]:
    r = imagelog.read(run)
    rec = next(r.records())
    return [
        ("read(missing)", lambda: imagelog.read(tmp / "missing"), imagelog.RunNotFound, "no imagelog run"),
        ("read(file)", lambda: imagelog.read(tmp / "FILE"), imagelog.RunNotFound, "is a file"),
        ("read('')", lambda: imagelog.read(""), imagelog.StoreError, "empty"),
        ("get(unknown)", lambda: r.get("zzz"), imagelog.RecordNotFound, "no record"),
        ("get('')", lambda: r.get(""), imagelog.RecordNotFound, "empty id"),
        ("read_bytes(event)", lambda: r.read_bytes({"event": {"action": "dropped"}}), ValueError,
         "no image"),
        ("export(to=tarball)", lambda: export(r, tmp / "out", to="tarball"), ValueError,
         "tarball"),
        ("export(image_format=gif)", lambda: export(r, tmp / "out", to="parquet",
                                                   image_format="gif"), ValueError, "gif"),
        ("export(shard_bytes=0)", lambda: export(r, tmp / "out", to="parquet", shard_bytes=0),
         ValueError, "shard_bytes"),
        ("export(since=yesterday)", lambda: export(r, tmp / "out", to="parquet",
                                                  since="yesterday"), ValueError, "since"),
        ("export(where=bad)", lambda: export(r, tmp / "out", to="parquet", where="bogus ="),
         Exception, "syntax"),
        ("export(into a file)", lambda: export(r, tmp / "FILE", to="parquet"),
         NotADirectoryError, "is a file"),
        ("compact(grace_ns=-1)", lambda: compact(make_store(run), grace_ns=-1), ValueError,
         "grace_ns"),
        ("verify(sample=2)", lambda: verify(r, sample=2), ValueError, "sample"),
        ("verify(sample=nan)", lambda: verify(r, sample=math.nan), ValueError, "sample"),
        ("open('')", lambda: imagelog.open(""), imagelog.StoreError, "empty"),
        ("records(where=bad)", lambda: next(r.records(where="bogus =")), Exception, "bogus"),
        ("records(since=bad)", lambda: next(r.records(since="yesterday")), ValueError, "since"),
        ("query(bad)", lambda: r.query("select nothing from nowhere").fetchall(), Exception,
         "nowhere"),
        ("load(event)", lambda: r.load({"event": {"action": "dropped"}, "image": {"id": rec["image"]["id"]}}),
         ValueError, "no image"),
    ]  # fmt: skip


def test_public_functions_name_the_mistake_and_change_nothing(run: Path, tmp_path: Path) -> None:
    """Each bad call raises the error its API promises, in one line naming the problem; the run
    and the output folder stay as they were."""
    (tmp_path / "FILE").write_bytes(b"not a run\n")
    before = tree(run)
    for what, call, error, named in _calls(run, tmp_path):
        with pytest.raises(error) as info:
            call()
        message = str(info.value.args[0]) if info.value.args else str(info.value)
        assert len(message.splitlines()) == 1 or isinstance(info.value, Exception), what
        assert named.lower() in str(info.value).lower(), (what, str(info.value))
        assert tree(run) == before, what
        assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"], what

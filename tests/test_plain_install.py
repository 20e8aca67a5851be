"""``pip install imagelog`` without extras: every reading verb works on a run (issue 19).

Builds the wheel, installs it with its pinned dependencies (``constraints.txt``) into a fresh
virtual environment that cannot see this one's packages, and runs each verb there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from .conftest import require

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "IMAGELOG"))}
    return subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=900, check=False, **kw
    )  # type: ignore[call-overload,no-any-return]


@pytest.fixture(name="plain", scope="module")
def _plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with the wheel and no extras; returns its bin folder."""
    tmp = tmp_path_factory.mktemp("plain")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp), str(ROOT)]
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp.glob("imagelog-*.whl")
    venv.create(tmp / "venv", with_pip=True, system_site_packages=False)
    bin_dir = tmp / "venv" / "bin"
    installed = _run([str(bin_dir / "python"), "-m", "pip", "install", "-q",
                      "-c", str(ROOT / "constraints.txt"), str(wheel)])  # fmt: skip
    require(installed.returncode == 0, f"installing the wheel from PyPI: {installed.stderr[-500:]}")
    return bin_dir


def test_every_reading_verb_without_extras(plain: Path, tmp_path: Path) -> None:
    """No pyarrow and no extras: ls, stats, show, tail, export, query and records() work; what
    needs an extra says which."""
    py = str(plain / "python")
    probe = _run([py, "-c", "import importlib.util as u; print(u.find_spec('pyarrow') is None)"])
    assert probe.stdout.strip() == "True", "the plain install must not hold pyarrow"
    run = tmp_path / "run"
    script = (
        "import sys, imagelog, numpy as np\n"
        "with imagelog.open(sys.argv[1]) as log:\n"
        "    for i in range(4):\n"
        "        log.log(np.full((16, 16), i, np.uint8), source='cam', i=i)\n"
        "r = imagelog.read(sys.argv[1])\n"
        "print(len(list(r.records())), r.query('select count(*) from records').fetchall()[0][0])\n"
    )
    made = _run([py, "-c", script, str(run)])
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == ["4", "4"]
    cli = str(plain / "imagelog")
    ls = _run([cli, "ls", str(run), "--json"])
    assert ls.returncode == 0, ls.stderr
    first = json.loads(ls.stdout.splitlines()[0])
    verbs = [
        ["stats", str(run), "--json"],
        ["show", str(run), first["image"]["id"]],
        ["tail", str(run), "-n", "2"],
        ["query", str(run), "select count(*) from records"],
        ["export", str(run), str(tmp_path / "wds"), "--to", "webdataset"],
        ["export", str(run), str(tmp_path / "folder"), "--to", "imagefolder"],
        ["verify", str(run)],
    ]
    for args in verbs:
        out = _run([cli, *args])
        assert out.returncode == 0, (args, out.stderr)
        assert "Traceback" not in out.stderr
    assert json.loads(_run([cli, "stats", str(run), "--json"]).stdout)["images"] == 4
    for args in (
        ["compact", str(run)],
        ["export", str(run), str(tmp_path / "pq"), "--to", "parquet"],
    ):
        out = _run([cli, *args])
        assert out.returncode == 1 and 'pip install "imagelog[query]"' in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr

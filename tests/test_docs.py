"""Every example in the package's docstrings runs and gives what it shows, and leaves nothing."""

from __future__ import annotations

import doctest
import importlib
import logging
import pkgutil
import tempfile
from pathlib import Path

import pytest

import imagelog

SUBMODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(imagelog.__path__, "imagelog.")
    if "__main__" not in m.name
)
MODULES = ["imagelog", *SUBMODULES]  # the root package's own docstring included

#: modules whose docstrings show examples: each must still have some (an example deleted or
#: broken into prose would otherwise pass as "0 failed"). Modules not listed run theirs too.
WITH_EXAMPLES = {
    "imagelog", "imagelog._backoff", "imagelog._verify", "imagelog.codec_bench",
    "imagelog.checks", "imagelog.codecs", "imagelog.codecs.passthrough",
    "imagelog.frames", "imagelog.handler", "imagelog.ids", "imagelog.inputs",
    "imagelog.layout", "imagelog.logger", "imagelog.pixfmt", "imagelog._events",
    "imagelog._record_json", "imagelog.run",
    "imagelog.samples", "imagelog.select", "imagelog.settings", "imagelog.stores.s3",
}  # fmt: skip


def _examples(name: str) -> int:
    tests = doctest.DocTestFinder().find(importlib.import_module(name))
    return sum(len(t.examples) for t in tests)


def _handlers() -> dict[str, list[logging.Handler]]:
    loggers = [
        logging.getLogger(),
        *(logging.getLogger(n) for n in logging.root.manager.loggerDict),
    ]
    return {lg.name: list(lg.handlers) for lg in loggers}


@pytest.mark.parametrize("name", [m for m in MODULES if m in WITH_EXAMPLES or _examples(m)])
def test_docstring_examples(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's doctests pass, there are some, and they leave no folder and no handler."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # their mkdtemp() lands in tmp_path
    handlers = _handlers()
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} is listed as having examples but has none"
    after = _handlers()
    assert {n: h for n, h in after.items() if h != handlers.get(n, [])} == {}


def test_the_list_of_modules_with_examples_is_current() -> None:
    """Every module listed in WITH_EXAMPLES exists (a renamed module is renamed here too)."""
    assert set(MODULES) >= WITH_EXAMPLES

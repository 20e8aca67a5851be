"""Optional dependencies: one message for a missing extra, naming what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise ``ImportError`` saying that ``what`` needs the ``extra``.

    >>> require("json", "query", "reading JSON").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f'{what} needs the {extra} extra: pip install "imagelog[{extra}]" (no module {module})'
        ) from None

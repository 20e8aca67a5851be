"""The standard logging bridge: ``logger.info("...", extra={"image": frame})`` writes an image."""

from __future__ import annotations

import logging
from typing import Any

from .inputs import LEVELS
from .logger import ImageLog

__all__ = ["Handler"]

_EXTRA_KEYS = ("source", "labels", "meta", "channel_order", "format", "captured_at", "size",
               "pixel_format", "stride")  # fmt: skip


def _level(record: logging.LogRecord) -> str:
    """The record's level as ``log.level``: its name, or for a custom level the standard one
    at or below it (``TRACE`` = 5 -> ``debug``)."""
    name = record.levelname.lower()
    if name in LEVELS:
        return name
    for number, standard in ((50, "critical"), (40, "error"), (30, "warning"), (20, "info")):
        if record.levelno >= number:
            return standard
    return "debug"


class Handler(logging.Handler):
    """A ``logging.Handler`` that logs ``extra={"image": frame}`` to an ``ImageLog``.

    The record's ``message`` is the formatted log message, ``log.level`` the level name
    (lower case), ``log.logger`` the logger name. ``extra`` may also carry ``source`` (default:
    the logger name), ``labels``, ``meta`` (a dict: the record's ``meta``, as ``log(meta=...)``),
    ``format``, ``channel_order`` and ``captured_at``. Records without an image are ignored.

    Example:
        >>> import logging, numpy as np, imagelog, tempfile
        >>> log = imagelog.open(tempfile.mkdtemp())
        >>> lg = logging.getLogger("inspect"); handler = imagelog.Handler(log); lg.addHandler(handler)
        >>> lg.warning("defect %s", 3, extra={"image": np.zeros((4, 4), np.uint8)})
        >>> lg.removeHandler(handler); log.close()
        >>> [r["message"] for r in imagelog.read(log.url).records()]
        ['defect 3']
    """

    def __init__(self, log: ImageLog, level: int | str = logging.NOTSET) -> None:
        super().__init__(level)
        self.image_log = log

    def emit(self, record: logging.LogRecord) -> None:
        """Log the record's image, if it has one."""
        image = getattr(record, "image", None)
        if image is None:
            return
        try:
            message = self.format(record) if self.formatter else record.getMessage()
            kw: dict[str, Any] = {k: getattr(record, k) for k in _EXTRA_KEYS if hasattr(record, k)}
            kw.setdefault("source", record.name)
            self.image_log.log(
                image,
                message=message,
                level=_level(record),
                captured_at=kw.pop("captured_at", record.created),
                **kw,
            )
        except Exception:
            self.handleError(record)

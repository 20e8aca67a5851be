"""The module-level entry points: ``imagelog.open`` and the process-wide default log
(``init``, ``get_default``, ``log``, ``trigger``). ``imagelog.logger`` re-exports them."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from . import codecs
from .errors import InvalidSetting
from .settings import Settings
from .stores import make_store

if TYPE_CHECKING:
    from .logger import ImageLog


def open(path: str | os.PathLike[str], /, **settings: Any) -> ImageLog:
    """Open (create or continue) a run at a folder path or URL and return its ``ImageLog``.

    Settings (all keyword): ``format`` ("lossless", "preview", "compact", "archive", or a codec
    spec such as "png:level=1"), ``formats`` (per source), ``codec_options``, ``on_full``
    ("block", "drop_oldest", "drop_newest"), ``max_queue_bytes`` (e.g. "256 MiB"), ``workers``,
    ``fsync`` ("none", "index", "all"), ``max_bytes``, ``max_age``, ``min_free_bytes``, ``keep``,
    ``verify``, ``check_encoding``, ``close_timeout``, ``strict``, ``storage_options``, ``ring``
    (seconds held per source, e.g. "30s"), ``ring_bytes`` (part of ``max_queue_bytes``),
    ``ring_dir`` (see ``ImageLog.trigger``), ``select`` (which frames to store: ``"changed"``, a
    policy of ``imagelog.select``, or ``{source: policy}``), ``tiers`` (a list of
    ``imagelog.Tier``, or ``{source: [...]}``: retention tiers, ``imagelog.tiers``),
    ``shard_under`` (e.g. "64KiB": smaller images go into tar shards), ``shard_bytes`` and
    ``shard_age``.

    Raises:
        imagelog.StoreError: the path cannot be created or written (an ``OSError``).
        imagelog.InvalidSetting: a setting is out of range (a ``ValueError``).
        imagelog.UnsupportedRun: the run's ``imagelog.json`` names a newer record schema than
            this version writes, or is not a manifest (a ``ValueError``).

    Example:
        >>> import imagelog, tempfile
        >>> log = imagelog.open(tempfile.mkdtemp(), format="png:level=1", on_full="drop_oldest")
        >>> log.close()
    """
    from .logger import ImageLog

    s = Settings.from_kwargs(**settings)
    for spec in (s.format, *s.formats.values()):
        name = codecs.parse_spec(spec)[0]
        if name.lower() not in codecs.PRESETS:
            codecs.get(name)
    store = make_store(path, create=True, storage_options=s.storage_options)
    try:
        return ImageLog(store, s)
    except BaseException:
        store.close()
        raise


_default: ImageLog | None = None
_default_lock = threading.Lock()


def init(path: str | os.PathLike[str] | None = None, /, **settings: Any) -> ImageLog:
    """Open the process-wide default log used by ``imagelog.log()`` (path: ``IMAGELOG_DIR``)."""
    global _default
    target = path if path is not None else os.environ.get("IMAGELOG_DIR")
    if target is None:
        raise InvalidSetting(
            "imagelog.init() needs a path (or the IMAGELOG_DIR environment variable)"
        )
    with _default_lock:
        if _default is not None and not _default.closed:
            _default.close()
        _default = open(target, **settings)
        return _default


def get_default() -> ImageLog:
    """The log opened by ``imagelog.init()``."""
    if _default is None or _default.closed:
        raise RuntimeError("no default log: call imagelog.init(path) first")
    return _default


def log(frame: object, /, **kwargs: Any) -> str:
    """``imagelog.init(path)`` once, then ``imagelog.log(frame, source=...)`` anywhere."""
    return get_default().log(frame, **kwargs)


def trigger(reason: str, **kwargs: Any) -> str:
    """``ImageLog.trigger`` on the log opened by ``imagelog.init(path, ring=...)``."""
    return get_default().trigger(reason, **kwargs)

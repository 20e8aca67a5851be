"""Every exception imagelog raises, in one place.

The tree::

    ImageLogError(Exception)
    ├── InvalidFrame(ImageLogError, ValueError)        bad shape, channel count, size vs byte count
    ├── UnsupportedInput(ImageLogError, TypeError)     an input type or dtype imagelog cannot store
    ├── MetadataNotJSON(ImageLogError, TypeError)      caller metadata that JSON cannot hold
    ├── MetadataTooLarge(ImageLogError, ValueError)    caller metadata over ``MAX_RECORD_BYTES`` of JSON
    ├── UnknownFormat(ImageLogError, ValueError)       a format or preset name that is not registered
    ├── FormatMismatch(ImageLogError, ValueError)      a codec that would mangle this frame (16-bit JPEG)
    ├── InvalidSetting(ImageLogError, ValueError)      a bad argument to ``imagelog.open()``
    ├── StoreError(ImageLogError, OSError)             the storage cannot be used (unwritable, bad credentials)
    │   ├── SpoolFull(StoreError)                      the local spool has no room while the store is down
    │   └── KeyOutsideRun(StoreError, FileNotFoundError)  a key naming no file inside the run (``..``, a link out)
    ├── CodecError(ImageLogError)                      an encoder or decoder failed
    ├── RunNotFound(ImageLogError, FileNotFoundError)  ``imagelog.read()`` of a path that holds no run
    ├── RecordNotFound(ImageLogError, KeyError)        ``Run.get()`` of an id that is not there (or ambiguous)
    ├── UnsupportedRun(ImageLogError, ValueError)      a run of a newer schema, or with a manifest that is not one
    └── QueueClosed(ImageLogError)                     internal: the queue takes no more work (never reaches callers)

Errors raised in the caller's thread subclass both the root and the builtin the API promises, so
``except ValueError`` and ``except imagelog.ImageLogError`` both work. Errors in the background
threads are never raised in the caller's thread: they are counted in ``ImageLog.stats()`` and
reported through the ``imagelog`` logger (or re-raised by ``flush()``/``close()`` in strict mode).
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "FormatMismatch",
    "ImageLogError",
    "InvalidFrame",
    "InvalidSetting",
    "KeyOutsideRun",
    "MetadataNotJSON",
    "MetadataTooLarge",
    "QueueClosed",
    "RecordNotFound",
    "RunNotFound",
    "SpoolFull",
    "StoreError",
    "UnknownFormat",
    "UnsupportedInput",
    "UnsupportedRun",
]


class ImageLogError(Exception):
    """The root of every imagelog exception."""


class InvalidFrame(ImageLogError, ValueError):
    """A frame whose shape, channel count or byte count cannot be an image."""


class UnsupportedInput(ImageLogError, TypeError):
    """An input type or dtype that imagelog cannot store."""


class MetadataNotJSON(ImageLogError, TypeError):
    """Caller metadata that JSON cannot hold."""


class MetadataTooLarge(ImageLogError, ValueError):
    """Caller metadata (``meta``, ``labels``, ``message``) over ``inputs.MAX_RECORD_BYTES`` of JSON."""


class UnknownFormat(ImageLogError, ValueError):
    """A format or preset name that no codec is registered under."""


class FormatMismatch(ImageLogError, ValueError):
    """A frame that the chosen format cannot store without silently changing it."""


class InvalidSetting(ImageLogError, ValueError):
    """A bad argument to ``imagelog.open()``."""


class StoreError(ImageLogError, OSError):
    """Storage that cannot be used: unwritable folder, bad credentials, missing bucket."""

    def __init__(self, message: str, *, path: str | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.path = path
        #: Whether the storage may work again by itself (a server that did not answer).
        self.transient = transient


class SpoolFull(StoreError):
    """The local spool of an object store has no room for an image (recorded as a drop)."""


class KeyOutsideRun(StoreError, FileNotFoundError):
    """A key that names no file inside the run: empty, absolute, with ``.``, ``..`` or empty parts,
    a backslash or NUL, or (local folders) a path that a symlink leads out of the run folder.

    A ``FileNotFoundError`` too: for the run, there is no such file, and every reader that skips
    a missing file skips this one (with this message).
    """


class CodecError(ImageLogError):
    """An encoder or decoder failed."""

    def __init__(self, message: str, *, codec: str | None = None) -> None:
        super().__init__(message)
        self.codec = codec


class RunNotFound(ImageLogError, FileNotFoundError):
    """``imagelog.read()`` of a path or URL that holds no run."""


class RecordNotFound(ImageLogError, KeyError):
    """``Run.get()`` of a record id (or id prefix) that the run does not hold, or that is ambiguous."""


class UnsupportedRun(ImageLogError, ValueError):
    """A run this version must not read or append to: its manifest names a newer record schema,
    or is not a manifest (not JSON, no schema)."""


class QueueClosed(ImageLogError):
    """The log's queue takes no more work (internal: the log turns it into its own answer)."""

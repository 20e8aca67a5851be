"""imagelog: log images from running programs, without slowing them down or filling the disk.

>>> import numpy as np, imagelog, tempfile
>>> path = tempfile.mkdtemp()
>>> with imagelog.open(path, format="lossless") as log:
...     rid = log.log(np.zeros((120, 160, 3), np.uint8), source="cam1", score=0.93)
>>> [r["meta"] for r in imagelog.read(path).records()]
[{'score': 0.93}]
"""

from __future__ import annotations

from importlib.metadata import version as _version

from . import select as select
from .errors import CodecError as CodecError
from .errors import FormatMismatch as FormatMismatch
from .errors import ImageLogError as ImageLogError
from .errors import InvalidFrame as InvalidFrame
from .errors import InvalidSetting as InvalidSetting
from .errors import KeyOutsideRun as KeyOutsideRun
from .errors import MetadataNotJSON as MetadataNotJSON
from .errors import MetadataTooLarge as MetadataTooLarge
from .errors import RecordNotFound as RecordNotFound
from .errors import RunNotFound as RunNotFound
from .errors import StoreError as StoreError
from .errors import UnknownFormat as UnknownFormat
from .errors import UnsupportedInput as UnsupportedInput
from .errors import UnsupportedRun as UnsupportedRun
from .frames import RawFrame as RawFrame
from .handler import Handler as Handler
from .logger import ImageLog as ImageLog
from .logger import get_default as get_default
from .logger import init as init
from .logger import log as log
from .logger import open as open
from .logger import trigger as trigger
from .run import Run as Run
from .run import read as read
from .settings import Fsync as Fsync
from .settings import OnFull as OnFull
from .tiers import Tier as Tier

__version__ = _version("imagelog")

__all__ = [
    "CodecError",
    "FormatMismatch",
    "Fsync",
    "Handler",
    "ImageLog",
    "ImageLogError",
    "InvalidFrame",
    "InvalidSetting",
    "KeyOutsideRun",
    "MetadataNotJSON",
    "MetadataTooLarge",
    "OnFull",
    "RawFrame",
    "RecordNotFound",
    "Run",
    "RunNotFound",
    "StoreError",
    "Tier",
    "UnknownFormat",
    "UnsupportedInput",
    "UnsupportedRun",
    "__version__",
    "get_default",
    "init",
    "log",
    "open",
    "read",
    "select",
    "trigger",
]

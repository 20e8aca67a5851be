"""Settings of one log: the frozen ``Settings`` dataclass, its enums and the size/duration parsers."""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .errors import InvalidSetting

if TYPE_CHECKING:
    from .select import Select

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_FORMAT",
    "DEFAULT_MAX_QUEUE_BYTES",
    "Fsync",
    "OnFull",
    "Settings",
    "parse_bytes",
    "parse_duration",
]

DEFAULT_MAX_QUEUE_BYTES = 256 * 2**20
DEFAULT_FORMAT = "lossless"
DEFAULT_CLOSE_TIMEOUT = 30.0
#: Encoded images smaller than this go into shards (``imagelog._shards``); 0 turns shards off.
DEFAULT_SHARD_UNDER = 0
#: A shard rolls at this size or age (and at the hour).
DEFAULT_SHARD_BYTES = 64 * 2**20
DEFAULT_SHARD_AGE = 60.0
MAX_SHARD_UNDER = 16 * 2**20


class OnFull(enum.StrEnum):
    """What ``log()`` does when the byte-bounded queue is full."""

    BLOCK = "block"
    """Wait until the encoders have made room (the only case where ``log()`` waits)."""
    DROP_OLDEST = "drop_oldest"
    """Drop the oldest queued frames to make room: the newest frames survive."""
    DROP_NEWEST = "drop_newest"
    """Drop the frame being logged: what is already queued survives."""


class Fsync(enum.StrEnum):
    """How much imagelog asks the kernel to put on stable storage before a record counts as written."""

    NONE = "none"
    """No fsync: survives a crash or ``kill -9`` of the process, not a kernel crash or power loss."""
    INDEX = "index"
    """fsync each index segment after its lines are written (batched)."""
    ALL = "all"
    """fsync every image file before its rename, its folder, and the index: survives power loss."""


_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(min|s|m|h|d|w)")


def parse_bytes(value: int | float | str, *, name: str = "size") -> int:
    """Parse a byte count: an int, or a string such as ``"512 MiB"`` or ``"20GB"``.

    >>> parse_bytes("512 MiB"), parse_bytes("1.5 GB"), parse_bytes(4096)
    (536870912, 1500000000, 4096)
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a string such as '512 MiB', not a bool")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidSetting(f"{name} must be a finite number of bytes, got {value!r}")
        if value < 0:
            raise InvalidSetting(f"{name} must not be negative, got {value!r}")
        return int(value)
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be an int or a string such as '512 MiB', not {type(value).__name__}"
        )
    m = _SIZE_RE.match(value)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise InvalidSetting(f"{name}: cannot parse {value!r} as a size; try '500 MB' or '2 GiB'")
    number = m.group(1)
    factor = _SIZE_UNITS[unit]
    return int(number) * factor if number.isdigit() else int(float(number) * factor)


def parse_duration(value: float | int | str | timedelta, *, name: str = "duration") -> float:
    """Parse a duration in seconds: a number, a ``timedelta`` or a string such as ``"7d"``, ``"1h30m"``.

    >>> parse_duration("7d"), parse_duration("1h30m"), parse_duration(timedelta(minutes=2))
    (604800.0, 5400.0, 120.0)
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be seconds, a timedelta or a string such as '7d', not a bool")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        if value < 0:
            raise InvalidSetting(f"{name} must not be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be seconds, a timedelta or a string, not {type(value).__name__}"
        )
    text = value.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidSetting(
            f"{name}: cannot parse {value!r} as a duration; try '30s', '12h' or '7d'"
        )
    return total


def _enum(cls: type[enum.StrEnum], value: object, name: str) -> Any:
    try:
        return cls(str(value))
    except ValueError:
        choices = ", ".join(repr(m.value) for m in cls)
        raise InvalidSetting(f"{name} must be one of {choices}, got {value!r}") from None


def _env_bytes(var: str, default: int) -> int:
    raw = os.environ.get(var)
    if raw is None:
        return default
    try:
        return parse_bytes(raw, name=var)
    except (InvalidSetting, TypeError) as exc:
        raise InvalidSetting(f"environment variable {var}={raw!r}: {exc}") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything ``imagelog.open()`` accepts, validated once, at open.

    Sizes accept ints or strings (``"512 MiB"``), durations seconds or strings (``"7d"``).

    ``shard_under`` (bytes; 0 or None: off) packs images whose encoded size is under it into
    per-writer tar shards, rolled at ``shard_bytes`` or ``shard_age`` (docs/record.md).

    ``ring`` (seconds per source, or ``{source: duration}`` to hold only those sources, each for
    its own duration) and/or ``ring_bytes`` turn the ring on (see ``ImageLog.trigger``):
    ``ring_bytes`` is part of ``max_queue_bytes`` (default: half of it), the queue keeps the rest.

    ``select`` (a policy for every source, or ``{source: policy}`` with ``"*"`` for the others)
    decides which frames are stored (``imagelog.select``); validated into ``Select`` objects.
    """

    format: str = DEFAULT_FORMAT
    codec_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    formats: Mapping[str, str] = dataclasses.field(default_factory=dict)
    on_full: OnFull = OnFull.BLOCK
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    workers: int = 0
    fsync: Fsync = Fsync.NONE
    max_bytes: int | None = None
    max_age: float | None = None
    min_free_bytes: int | None = None
    keep: Callable[[Mapping[str, Any]], bool] | None = None
    verify: str | float = "off"
    check_encoding: str | float = "off"
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    strict: bool = False
    hash: bool = True
    worker_nice: int = 5
    ring: float | Mapping[str, float] | None = None
    ring_bytes: int | None = None
    ring_dir: str | None = None
    select: Select | Mapping[str, Select] | None = None
    shard_under: int = DEFAULT_SHARD_UNDER
    shard_bytes: int = DEFAULT_SHARD_BYTES
    shard_age: float = DEFAULT_SHARD_AGE
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tiers: Any = None
    """Retention tiers (``imagelog.tiers.Ladders``, from a list of ``imagelog.Tier`` or
    ``{source: [Tier, ...]}``), or None."""
    tier_cpu: float = 0.5
    """The share of one core the writer's tier thread may use while it has work (0 < x <= 1)."""

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Settings:
        """Build settings from ``open()``'s keyword arguments, parsing human strings."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"imagelog.open() got unknown setting(s) {', '.join(unknown)}; "
                f"known settings: {', '.join(sorted(known))}"
            )
        kw = dict(kwargs)
        kw.setdefault(
            "max_queue_bytes", _env_bytes("IMAGELOG_MAX_QUEUE_BYTES", DEFAULT_MAX_QUEUE_BYTES)
        )
        if "strict" not in kw:
            kw["strict"] = os.environ.get("IMAGELOG_STRICT", "") not in ("", "0", "false", "no")
        kw["max_queue_bytes"] = parse_bytes(kw["max_queue_bytes"], name="max_queue_bytes")
        for key in ("max_bytes", "min_free_bytes"):
            if kw.get(key) is not None:
                kw[key] = parse_bytes(kw[key], name=key)
        if kw.get("max_age") is not None:
            kw["max_age"] = parse_duration(kw["max_age"], name="max_age")
        ring = kw.get("ring")
        if isinstance(ring, Mapping):
            if not ring or not all(isinstance(k, str) and k for k in ring):
                raise InvalidSetting(
                    f"ring as a mapping takes source names to durations, got {dict(ring)!r}"
                )
            kw["ring"] = {k: parse_duration(v, name=f"ring[{k!r}]") for k, v in ring.items()}
        elif ring is not None:
            kw["ring"] = parse_duration(ring, name="ring")
        if kw.get("ring_bytes") is not None:
            kw["ring_bytes"] = parse_bytes(kw["ring_bytes"], name="ring_bytes")
        elif kw.get("ring") is not None:  # the ring takes half of the memory bound by default
            kw["ring_bytes"] = kw["max_queue_bytes"] // 2
        if kw.get("ring_dir") is not None:
            kw["ring_dir"] = os.fspath(kw["ring_dir"])
        under = kw.get("shard_under", DEFAULT_SHARD_UNDER)
        kw["shard_under"] = 0 if under in (None, False) else parse_bytes(under, name="shard_under")
        if "shard_bytes" in kw:
            kw["shard_bytes"] = parse_bytes(kw["shard_bytes"], name="shard_bytes")
        if "shard_age" in kw:
            kw["shard_age"] = parse_duration(kw["shard_age"], name="shard_age")
        if "close_timeout" in kw:
            kw["close_timeout"] = parse_duration(kw["close_timeout"], name="close_timeout")
        if kw.get("select") is not None:
            from .select import as_select_map  # select.py reads durations with this module

            kw["select"] = as_select_map(kw["select"])
        if kw.get("tiers") is not None:
            from .tiers import ladders_of

            kw["tiers"] = ladders_of(kw["tiers"]) or None
        kw["on_full"] = _enum(OnFull, kw.get("on_full", OnFull.BLOCK), "on_full")
        kw["fsync"] = _enum(Fsync, kw.get("fsync", Fsync.NONE), "fsync")
        return cls(**kw)

    def __post_init__(self) -> None:
        """Check what the parsers cannot."""
        if self.max_queue_bytes <= 0:
            raise InvalidSetting(f"max_queue_bytes must be positive, got {self.max_queue_bytes}")
        if isinstance(self.workers, bool) or self.workers < 0:
            raise InvalidSetting(
                f"workers must be an int >= 0 (0 = one per core), got {self.workers!r}"
            )
        if isinstance(self.worker_nice, bool) or not 0 <= self.worker_nice <= 19:
            raise InvalidSetting(f"worker_nice must be an int 0..19, got {self.worker_nice!r}")
        if self.keep is not None and not callable(self.keep):
            raise TypeError("keep must be a callable taking a record dict and returning a bool")
        if not isinstance(self.format, str):
            raise TypeError(
                f"format must be a string such as 'lossless' or 'png', not {self.format!r}"
            )
        rings = self.ring.values() if isinstance(self.ring, Mapping) else [self.ring]
        for r in rings:
            if r is not None and r <= 0:
                raise InvalidSetting(f"ring must be a positive duration such as '30s', got {r!r}")
        if self.ring_dir is not None and self.ring_bytes is None:
            raise InvalidSetting("ring_dir needs a ring: add ring='30s' (and/or ring_bytes=)")
        if self.ring_bytes is not None and not 0 < self.ring_bytes < self.max_queue_bytes:
            raise InvalidSetting(
                f"ring_bytes must be positive and below max_queue_bytes ({self.max_queue_bytes}): "
                f"the ring's memory counts against that bound; got {self.ring_bytes}"
            )
        cpu: object = self.tier_cpu  # a careless caller passes anything
        if isinstance(cpu, bool) or not isinstance(cpu, int | float) or not 0 < cpu <= 1:
            raise InvalidSetting(f"tier_cpu must be a share of one core, 0 < x <= 1, got {cpu!r}")
        if not 0 <= self.shard_under <= MAX_SHARD_UNDER:
            raise InvalidSetting(
                f"shard_under must be 0 (off) up to {MAX_SHARD_UNDER // 2**20} MiB, "
                f"got {self.shard_under}"
            )
        if self.shard_bytes <= 0 or self.shard_age <= 0:
            raise InvalidSetting(
                f"shard_bytes and shard_age must be positive, got {self.shard_bytes} and "
                f"{self.shard_age}"
            )
        for name in ("verify", "check_encoding"):
            v = getattr(self, name)
            ok = v in ("off", "all", "sample") or (isinstance(v, float) and 0.0 <= v <= 1.0)
            if not ok:
                raise InvalidSetting(
                    f"{name} must be 'off', 'sample', 'all' or a fraction 0..1, got {v!r}"
                )

"""Store what matters: ``select=`` policies, decided in the caller's thread before the frame is copied.

A policy is built from small parts, combined with ``|`` (or given as a list or a string):

- ``changed(threshold=0.01)``: the frame differs from the last *stored* frame of its source,
  judged on a small luma thumbnail normalised for brightness and contrast (sensor noise, slow
  lighting drift and a light switched on do not count; something entering or leaving does);
- ``sample(0.01)``: a random fraction; ``near("confidence", at=0.5, within=0.1)``: a value the
  caller passes (``log(..., confidence=0.47)``) close to a threshold;
- ``every(at_most="1s", at_least="10m")``: a rate cap per source and a heartbeat, so a static
  scene still shows up (``every("10s")`` is both);
- ``budget(100, per="hour")``: at most N frames per source per minute, hour or day, across
  every writer of the run: each stored frame claims ``select/<source>/<per>/<window>/<n>`` in
  the run's own store with an atomic create-if-absent (no server);
- ``when(lambda meta: meta.get("defect"))``: a predicate on the frame's metadata that always stores.

How they combine: a frame that a ``when`` accepts is stored. Otherwise it is a candidate when any
of ``changed``, ``sample``, ``near`` fires (or, with none of those, always), or when the
heartbeat of ``every`` is due; a candidate is stored unless the rate cap or the budget says no.
A frame not stored still gets an id; it is counted in ``stats()`` and summed up in the index by
``not_selected`` events (``record.not_selected_record``), so the books balance.

Strings: ``"changed"``, ``"changed(0.02), every(at_least=10m), budget(500/hour)"``,
``"near(confidence, 0.5, 0.1)"``, ``"sample(0.01)"``, ``"when(defect)"`` (the metadata or label
``defect`` is truthy). ``parse`` reads them; the replay (``imagelog select``) takes the same.

>>> from imagelog import select
>>> select.parse("changed, every(at_least=10m), budget(500/hour)")
Select('changed(threshold=0.01, persist=2), every(at_least=10m), budget(500/hour)')
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .errors import InvalidSetting
from .layout import SELECT_PREFIX
from .settings import parse_duration

__all__ = [
    "REASONS",
    "SELECT_PREFIX",
    "Budget",
    "Changed",
    "Every",
    "Near",
    "Policy",
    "Sample",
    "Select",
    "SelectLike",
    "When",
    "as_select",
    "as_select_map",
    "budget",
    "changed",
    "changed_fraction",
    "every",
    "luma_thumbnail",
    "near",
    "normalise_thumbnail",
    "parse",
    "sample",
    "when",
]

logger = logging.getLogger("imagelog")

#: Why a frame was not stored (``event.reason`` counts of a ``not_selected`` summary).
REASONS = ("unchanged", "not_sampled", "not_near", "rate", "budget")
#: Thumbnail: about this many cells across the frame's short side, each averaging up to
#: ``_SAMPLES`` x ``_SAMPLES`` pixels read with a stride (no full-frame conversion).
_CELLS = 24
_SAMPLES = 4
_PERIODS = {"minute": 60, "hour": 3600, "day": 86400}
_PERIOD_NAMES = {"m": "minute", "min": "minute", "minute": "minute", "h": "hour", "hour": "hour",
                 "d": "day", "day": "day"}  # fmt: skip


# -- the parts ------------------------------------------------------------------------------------
class Policy:
    """One part of a policy; combine parts with ``|``."""

    def __or__(self, other: object) -> Select:
        return as_select(self) | other

    def __ror__(self, other: object) -> Select:
        return as_select(other) | self

    def spec(self) -> str:
        """The part as ``parse`` reads it."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Changed(Policy):
    """Store a frame that differs from the last stored frame of its source.

    Each frame becomes a thumbnail of about 24 cells across its short side (each cell the mean
    of up to 4x4 pixels of one channel, read with a stride), normalised to zero mean and unit
    contrast, so a global brightness or gain change leaves it as it was. A cell *changed* when
    it moved by more than ``tolerance`` (in units of the scene's contrast); the frame changed
    when at least ``threshold`` of its cells did, in ``persist`` frames in a row (2: a one-frame
    flicker is ignored, and a real change is stored at its second frame).
    """

    threshold: float = 0.01
    persist: int = 2
    tolerance: float = 0.3

    def __post_init__(self) -> None:
        _check_fraction(self.threshold, "changed threshold", open_low=True)
        if isinstance(self.persist, bool) or not isinstance(self.persist, int) or self.persist < 1:  # type: ignore[redundant-expr,unused-ignore]
            raise InvalidSetting(f"changed persist must be an int >= 1, got {self.persist!r}")
        if not _is_number(self.tolerance) or not 0 < self.tolerance <= 10:
            raise InvalidSetting(f"changed tolerance must be in (0, 10], got {self.tolerance!r}")

    def spec(self) -> str:
        """``changed(threshold=..., persist=...)``."""
        extra = "" if self.tolerance == 0.3 else f", tolerance={self.tolerance:g}"
        return f"changed(threshold={self.threshold:g}, persist={self.persist}{extra})"


@dataclasses.dataclass(frozen=True)
class Sample(Policy):
    """Store a random ``fraction`` of frames (``seed`` makes it repeatable)."""

    fraction: float
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_fraction(self.fraction, "sample fraction")

    def spec(self) -> str:
        """``sample(fraction)``."""
        return f"sample({self.fraction:g})"


@dataclasses.dataclass(frozen=True)
class Near(Policy):
    """Store a frame whose metadata (or label) ``key`` is within ``within`` of ``at``."""

    key: str
    at: float
    within: float

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:  # type: ignore[redundant-expr,unused-ignore]
            raise InvalidSetting(f"near needs a metadata key (a non-empty str), got {self.key!r}")
        if not _is_number(self.at):
            raise InvalidSetting(f"near at= must be a number, got {self.at!r}")
        if not _is_number(self.within) or self.within < 0:
            raise InvalidSetting(f"near within= must be a number >= 0, got {self.within!r}")

    def spec(self) -> str:
        """``near(key, at, within)``."""
        return f"near({self.key}, {self.at:g}, {self.within:g})"


@dataclasses.dataclass(frozen=True)
class When(Policy):
    """Always store a frame for which ``predicate(meta)`` is true (``meta``: the keyword
    arguments of ``log()``, with ``labels`` under ``"labels"`` unless a keyword has that name).
    A predicate that raises counts as false (reported once a minute)."""

    predicate: Callable[[Mapping[str, Any]], Any]
    name: str = "predicate"

    def __post_init__(self) -> None:
        if not callable(self.predicate):
            raise InvalidSetting(
                f"when needs a callable taking the metadata, got {self.predicate!r}"
            )

    def spec(self) -> str:
        """``when(name)``."""
        return f"when({self.name})"


@dataclasses.dataclass(frozen=True)
class Every(Policy):
    """At most one stored frame per ``at_most`` seconds per source (a rate cap) and at least one
    per ``at_least`` (a heartbeat), on the capture axis."""

    at_most: float | None = None
    at_least: float | None = None

    def __post_init__(self) -> None:
        if self.at_most is None and self.at_least is None:
            raise InvalidSetting("every needs an interval: every('10s') or every(at_least='10m')")
        for name in ("at_most", "at_least"):
            v = getattr(self, name)
            if v is not None and (not _is_number(v) or not 0 < v < 10 * 365 * 86400):
                raise InvalidSetting(f"every {name} must be a positive duration, got {v!r}")

    def spec(self) -> str:
        """``every(...)``."""
        if self.at_most == self.at_least:
            return f"every({_dur(self.at_most)})"
        parts = [f"{n}={_dur(v)}" for n, v in (("at_most", self.at_most),
                                                 ("at_least", self.at_least)) if v is not None]  # fmt: skip
        return f"every({', '.join(parts)})"


@dataclasses.dataclass(frozen=True)
class Budget(Policy):
    """At most ``n`` stored frames per source per ``per`` (``minute``, ``hour``, ``day``; UTC
    windows of log time), across every writer of the run."""

    n: int
    per: str = "hour"

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 0 <= self.n <= 10**7:  # type: ignore[redundant-expr,unused-ignore]
            raise InvalidSetting(
                f"budget must be a whole number of frames 0..10000000, got {self.n!r}"
            )
        if self.per not in _PERIODS:
            raise InvalidSetting(f"budget per= must be 'minute', 'hour' or 'day', got {self.per!r}")

    def spec(self) -> str:
        """``budget(n/per)``."""
        return f"budget({self.n}/{self.per})"


@dataclasses.dataclass(frozen=True)
class Select:
    """A combined policy (what ``select=`` holds once validated)."""

    parts: tuple[Policy, ...]

    def __or__(self, other: object) -> Select:
        return Select(self.parts + as_select(other).parts)

    def __ror__(self, other: object) -> Select:
        return as_select(other) | self

    def spec(self) -> str:
        """The policy as ``parse`` reads it."""
        return ", ".join(p.spec() for p in self.parts)

    def __repr__(self) -> str:
        return f"Select({self.spec()!r})"

    @property
    def needs_pixels(self) -> bool:
        """Whether a part looks at the pixels (``changed``)."""
        return any(isinstance(p, Changed) for p in self.parts)


SelectLike = str | Policy | Select | Iterable["SelectLike"]


def changed(threshold: float = 0.01, *, persist: int = 2, tolerance: float = 0.3) -> Changed:
    """Store frames that differ from the last stored one of their source (see ``Changed``)."""
    return Changed(threshold, persist, tolerance)


def sample(fraction: float, *, seed: int | None = None) -> Sample:
    """Store a random ``fraction`` of frames."""
    return Sample(fraction, seed)


def near(key: str, at: float, within: float) -> Near:
    """Store frames whose metadata ``key`` is within ``within`` of ``at``."""
    return Near(key, at, within)


def when(predicate: Callable[[Mapping[str, Any]], Any] | str) -> When:
    """Always store frames for which ``predicate(meta)`` is true; a str names a metadata key
    (or label) that must be truthy."""
    if isinstance(predicate, str):
        if not predicate:
            raise InvalidSetting("when needs a metadata key or a callable, got ''")
        return When(_KeyTruthy(predicate), predicate)
    return When(predicate, getattr(predicate, "__name__", "predicate"))


def every(
    interval: float | str | None = None,
    *,
    at_most: float | str | None = None,
    at_least: float | str | None = None,
) -> Every:
    """A rate cap (``at_most``) and a heartbeat (``at_least``); ``every("10s")`` is both."""
    if interval is not None:
        at_most = at_most if at_most is not None else interval
        at_least = at_least if at_least is not None else interval
    return Every(
        None if at_most is None else parse_duration(at_most, name="every at_most"),
        None if at_least is None else parse_duration(at_least, name="every at_least"),
    )


def budget(n: int, *, per: str = "hour") -> Budget:
    """At most ``n`` frames per source per ``per`` across every writer of the run."""
    return Budget(n, _PERIOD_NAMES.get(per, per) if isinstance(per, str) else per)  # type: ignore[redundant-expr,unused-ignore]


@dataclasses.dataclass(frozen=True)
class _KeyTruthy:
    key: str

    def __call__(self, meta: Mapping[str, Any]) -> bool:
        v = meta.get(self.key)
        if v is None:
            labels = meta.get("labels")
            v = labels.get(self.key) if isinstance(labels, Mapping) else None
        return _truthy(v)


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() not in ("", "0", "false", "no", "none", "null")
    return bool(v)


def _is_number(v: object) -> bool:
    return (
        isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
    )


def _check_fraction(v: object, name: str, *, open_low: bool = False) -> None:
    ok = _is_number(v) and (0 < v <= 1 if open_low else 0 <= v <= 1)  # type: ignore[operator]
    if not ok:
        raise InvalidSetting(
            f"{name} must be a fraction {'(0, 1]' if open_low else '0..1'}, got {v!r}"
        )


def _dur(seconds: float | None) -> str:
    assert seconds is not None
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


# -- strings --------------------------------------------------------------------------------------
_TERM_RE = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$", re.S)
_FACTORIES: dict[str, Callable[..., Policy]] = {
    "changed": changed, "sample": sample, "near": near, "when": when, "every": every,
    "budget": budget,
}  # fmt: skip


def _split_top(text: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise InvalidSetting(f"select: unbalanced ')' in {text!r}")
        if ch in ",+" and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise InvalidSetting(f"select: unbalanced '(' in {text!r}")
    out.append("".join(cur))
    return out


def _value(text: str) -> Any:
    t = text.strip().strip("'\"")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def parse(text: str) -> Select:
    """Read a policy string: parts separated by commas (or ``+``), each ``name`` or
    ``name(args)``. Raises ``InvalidSetting`` naming what it could not read."""
    if not isinstance(text, str):
        raise TypeError(f"a select policy string is needed, got {type(text).__name__}")
    if not text.strip():
        raise InvalidSetting(
            "select: empty policy; try 'changed' or 'changed, every(at_least=10m)'"
        )
    parts: list[Policy] = []
    for term in _split_top(text):
        m = _TERM_RE.match(term)
        if not m or m.group(1) not in _FACTORIES:
            name = term.strip().split("(")[0] or term
            raise InvalidSetting(
                f"select: unknown policy {name!r}; known: {', '.join(_FACTORIES)} "
                "(e.g. 'changed, every(at_least=10m), budget(500/hour)')"
            )
        name, body = m.group(1), m.group(2)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for arg in _split_top(body) if body and body.strip() else []:
            if name == "budget" and "/" in arg and "=" not in arg:
                n, _, per = arg.partition("/")
                args.append(_value(n))
                kwargs["per"] = per.strip()
                continue
            key, eq, val = arg.partition("=")
            if eq:
                kwargs[key.strip()] = _value(val)
            elif kwargs:
                raise InvalidSetting(f"select: {name}({body}): positional after keyword argument")
            else:
                args.append(_value(arg))
        if name == "when" and (len(args) != 1 or kwargs or not isinstance(args[0], str)):
            raise InvalidSetting(
                f"select: when() takes one metadata key in a string, got {term.strip()!r}"
            )
        try:
            parts.append(_FACTORIES[name](*args, **kwargs))
        except TypeError as exc:
            raise InvalidSetting(f"select: {term.strip()!r}: {exc}") from None
    return Select(tuple(parts))


def as_select(value: object) -> Select:
    """A ``Select`` from a string, a part, a ``Select`` or a list of them."""
    if isinstance(value, Select):
        return value
    if isinstance(value, Policy):
        return Select((value,))
    if isinstance(value, str):
        return parse(value)
    if isinstance(value, list | tuple) and value:
        out = Select(())
        for v in value:
            out = out | as_select(v)
        return out
    raise InvalidSetting(
        f"select must be a policy ('changed', imagelog.select.changed(), a list of them), "
        f"got {value!r}"
    )


def as_select_map(value: object) -> Select | dict[str, Select] | None:
    """``select=`` of ``open()``: a policy for every source, or ``{source: policy}`` (the key
    ``"*"`` for the other sources; sources with neither are all stored)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if not value or not all(isinstance(k, str) and k for k in value):
            raise InvalidSetting(
                f"select as a mapping takes source names to policies, got {dict(value)!r}"
            )
        return {k: as_select(v) for k, v in value.items()}
    return as_select(value)


# -- the thumbnail --------------------------------------------------------------------------------
def luma_thumbnail(pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """A small float32 thumbnail of one channel (green of RGB), each cell the mean of up to 4x4
    pixels read with a stride: no full-frame copy or conversion. None for frames too small."""
    a = pixels
    if a.ndim == 3:
        a = a[:, :, 1 if a.shape[2] >= 3 else 0]
    if a.ndim != 2:
        return None
    h, w = a.shape
    short = min(h, w)
    if short < 4:
        return None
    cells = min(_CELLS, short)
    step = max(1, short // (cells * _SAMPLES))
    k = max(1, min(_SAMPLES, short // (cells * step)))
    gh, gw = h // (step * k), w // (step * k)
    v = a[: gh * k * step : step, : gw * k * step : step]
    if v.dtype == np.bool_:
        v = v.view(np.uint8)
    acc = np.float64 if v.dtype.kind == "f" else np.uint32
    t = v.reshape(gh, k, gw, k).sum(axis=(1, 3), dtype=acc)
    out: np.ndarray[Any, Any] = t.astype(np.float32)
    out *= np.float32(1.0 / (k * k) / _full_scale(pixels.dtype))
    if v.dtype.kind == "f":  # NaN or inf in a depth map or a model's output: not a change
        np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    return out


def _full_scale(dtype: np.dtype[Any]) -> float:
    if dtype.kind in "ui" and dtype.itemsize > 1:
        return float(np.iinfo(dtype).max)
    if dtype.kind in "ui":
        return 255.0
    return 1.0


#: The least contrast a thumbnail is normalised by (of full scale): a near-flat frame's noise is
#: not blown up into change.
_MIN_CONTRAST = 0.02


def normalise_thumbnail(t: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Zero mean, unit contrast (at least ``_MIN_CONTRAST``): brightness and gain drop out."""
    flat = t.ravel()
    d = flat - np.float32(flat.sum() / flat.size)
    sd = max(math.sqrt(float(np.dot(d, d)) / flat.size), _MIN_CONTRAST)
    d *= np.float32(1.0 / sd)
    out: np.ndarray[Any, Any] = d.reshape(t.shape)
    return out


def changed_fraction(
    ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any], tolerance: float
) -> float:
    """The fraction of cells whose normalised value moved by more than ``tolerance``."""
    if ref.shape != cur.shape:
        return 1.0
    return float(np.count_nonzero(np.abs(cur - ref) > tolerance)) / cur.size

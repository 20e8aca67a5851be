"""Tier steps and ladders: ``Tier`` (one step, checked), ``ladders_of`` (``tiers=`` checked into
``Ladders``) and the ladders a writer leaves in the run (``tiers.json``)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from .. import codecs
from ..errors import InvalidSetting
from ..record import dumps
from ..settings import parse_bytes, parse_duration
from ..stores.base import Store

#: Where a writer opened with ``tiers=`` leaves its ladder, for ``imagelog tier RUN``.
LADDER_KEY = "tiers.json"


@dataclasses.dataclass(frozen=True)
class Tier:
    """One step of a retention ladder, taken once a frame is ``after`` old (log time).

    Exactly one of ``format`` (a preset or codec spec), ``thin`` (an interval), ``thumbnail``
    (pixels, longest side; ``format`` may go with it, else the format of the last re-encode
    step before it, else ``"preview"``) or ``delete=True``. ``max_bytes`` caps the bytes of the
    frames in this step's tier: past it, the oldest go on to the next step early (past the last
    step: deleted).

    >>> Tier(after="1d", format="preview").after_s, Tier(after="7d", thin="10s").thin_s
    (86400.0, 10.0)
    """

    after: str | float | timedelta
    format: str | None = None
    thin: str | float | timedelta | None = None
    thumbnail: int | None = None
    delete: bool = False
    max_bytes: int | str | None = None
    after_s: float = dataclasses.field(init=False, repr=False, compare=False)
    thin_s: float | None = dataclasses.field(init=False, repr=False, compare=False)
    cap: int | None = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        after = parse_duration(self.after, name="Tier after")
        thin = None if self.thin is None else parse_duration(self.thin, name="Tier thin")
        cap = None if self.max_bytes is None else parse_bytes(self.max_bytes, name="Tier max_bytes")
        kinds = [k for k, on in (("thin", thin is not None), ("thumbnail", self.thumbnail is not None),
                                 ("delete", bool(self.delete))) if on]  # fmt: skip
        if self.format is not None and kinds and kinds != ["thumbnail"]:
            kinds.append("format")
        if len(kinds) > 1:
            raise InvalidSetting(f"a Tier does one thing; this one asks for {' and '.join(kinds)}")
        if not kinds and self.format is None:
            raise InvalidSetting(
                "a Tier needs format=, thin=, thumbnail= or delete=True, e.g. "
                "Tier(after='1d', format='preview')"
            )
        if thin is not None and thin <= 0:
            raise InvalidSetting(
                f"Tier thin must be a positive interval such as '10s', got {self.thin!r}"
            )
        pixels: object = self.thumbnail  # a careless caller passes anything
        if pixels is not None and (
            isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1
        ):
            raise InvalidSetting(
                f"Tier thumbnail must be a positive number of pixels, got {self.thumbnail!r}"
            )
        if self.format is not None:
            if not isinstance(self.format, str):
                raise TypeError(
                    f"Tier format must be a string such as 'preview', not {self.format!r}"
                )
            name, params = codecs.parse_spec(self.format)
            if name.lower() not in codecs.PRESETS:  # UnknownFormat names the formats, and
                codecs.get(name).params(params)  # FormatMismatch a parameter it lacks
        object.__setattr__(self, "after_s", after)
        object.__setattr__(self, "thin_s", thin)
        object.__setattr__(self, "cap", cap)

    @property
    def kind(self) -> str:
        """``format``, ``thin``, ``thumbnail`` or ``delete``."""
        if self.delete:
            return "delete"
        if self.thin_s is not None:
            return "thin"
        return "thumbnail" if self.thumbnail is not None else "format"

    @property
    def label(self) -> str:
        """The step's age as written (``"1d"``), for records."""
        return self.after if isinstance(self.after, str) else f"{self.after_s:g}s"

    def describe(self) -> str:
        """The step in words: ``after 1d: format preview``."""
        kind = self.kind
        if kind == "thin":
            what = f"thin to one frame per {self.thin_s:g} s"
        elif kind == "thumbnail":
            what = f"thumbnail {self.thumbnail} px" + (f" ({self.format})" if self.format else "")
        else:
            what = "delete" if kind == "delete" else f"format {self.format}"
        cap = f", max_bytes {self.cap}" if self.cap is not None else ""
        return f"after {self.label}: {what}{cap}"


Ladder = tuple[Tier, ...]


@dataclasses.dataclass(frozen=True)
class Ladders:
    """The ladder of each source (``default``: sources not named)."""

    default: Ladder = ()
    by_source: Mapping[str, Ladder] = dataclasses.field(default_factory=dict)

    def of(self, source: str) -> Ladder:
        """The ladder frames of ``source`` go down."""
        return self.by_source.get(source, self.default)

    def all(self) -> list[Ladder]:
        """Every ladder (non-empty)."""
        return [lad for lad in (self.default, *self.by_source.values()) if lad]

    def __bool__(self) -> bool:
        return bool(self.all())


def _ladder(steps: object, where: str) -> Ladder:
    if isinstance(steps, Tier):
        steps = [steps]
    if not isinstance(steps, list | tuple):
        raise TypeError(f"{where} must be a list of imagelog.Tier, not {type(steps).__name__}")
    for s in steps:
        if not isinstance(s, Tier):
            raise TypeError(f"{where} must hold imagelog.Tier steps, got {type(s).__name__}")
    ladder = tuple(steps)
    for a, b in itertools.pairwise(ladder):
        if b.after_s <= a.after_s:
            raise InvalidSetting(
                f"{where}: steps must be in order of age; ({b.describe()}) is listed after "
                f"({a.describe()})"
            )
    for s in ladder[:-1]:
        if s.delete:
            raise InvalidSetting(f"{where}: a delete step must be the last ({s.describe()})")
    return ladder


def ladders_of(tiers: object) -> Ladders:
    """Check ``tiers=``: a list of ``Tier`` (every source) or ``{source: [Tier, ...]}`` (``"*"``:
    sources not named)."""
    if tiers is None:
        return Ladders()
    if isinstance(tiers, Mapping):
        by = {}
        for src, steps in tiers.items():
            if not isinstance(src, str) or not src:
                raise InvalidSetting(f"tiers as a mapping takes source names, got {src!r}")
            by[src] = _ladder(steps, f"tiers[{src!r}]")
        default = by.pop("*", ())
        return Ladders(default, by)
    return Ladders(_ladder(tiers, "tiers"))


def _step_json(step: Tier) -> dict[str, Any]:
    out: dict[str, Any] = {"after": step.label}
    if step.format is not None:
        out["format"] = step.format
    if step.thin_s is not None:
        out["thin"] = step.thin if isinstance(step.thin, str) else step.thin_s
    if step.thumbnail is not None:
        out["thumbnail"] = step.thumbnail
    if step.delete:
        out["delete"] = True
    if step.cap is not None:
        out["max_bytes"] = step.cap
    return out


def save_ladders(store: Store, ladders: Ladders) -> None:
    """Leave the ladders in the run (``tiers.json``), so ``imagelog tier RUN`` uses them."""
    data = {"default": [_step_json(s) for s in ladders.default],
            "sources": {k: [_step_json(s) for s in v] for k, v in ladders.by_source.items()}}  # fmt: skip
    store.put(LADDER_KEY, (dumps(data) + "\n").encode("utf-8"))


def load_ladders(store: Store) -> Ladders:
    """The ladders a writer left in the run (empty if none)."""
    import json

    try:
        data = json.loads(store.get(LADDER_KEY))
    except (FileNotFoundError, ValueError):
        return Ladders()
    if not isinstance(data, dict):
        return Ladders()
    default = _ladder([Tier(**s) for s in data.get("default") or []], "tiers.json")
    by = {k: _ladder([Tier(**s) for s in v], f"tiers.json {k!r}")
          for k, v in (data.get("sources") or {}).items()}  # fmt: skip
    return Ladders(default, by)

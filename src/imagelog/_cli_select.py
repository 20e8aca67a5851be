"""``imagelog select RUN --policy P [--labels KEY]``: what a ``select=`` policy would have stored.

The replay reads a stored run (never changes it), feeds its frames per source in capture order
through the same ``Selector`` that ``log()`` uses (budgets counted in memory, in windows of the
frames' log time), and reports per source and hour (of capture time) how many frames the policy would have kept,
and which labelled frames (metadata or labels carrying KEY) it would have missed. Tune a policy
on yesterday's run, then put it in production.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from typing import Any

from ._selector import Claims, Selector
from .cli import add_run, count
from .errors import InvalidSetting
from .inputs import iso_ns
from .layout import hour_of
from .run import Run, read
from .select import Select, parse
from .stores import MemoryStore

__all__ = ["Replay", "add_select_commands", "replay"]


@dataclasses.dataclass
class Replay:
    """What a policy would have done to a run's stored frames."""

    policy: str
    #: (source, hour) -> [frames, would store]
    hours: dict[tuple[str, str], list[int]] = dataclasses.field(default_factory=dict)
    labelled: int = 0
    #: labelled frames the policy would miss: (id, source, @timestamp, label value)
    missed: list[tuple[str, str, str, str]] = dataclasses.field(default_factory=list)
    #: frames whose image could not be read (judged as changed, like bytes log() cannot judge)
    unreadable: int = 0

    @property
    def frames(self) -> int:
        """Stored frames replayed."""
        return sum(v[0] for v in self.hours.values())

    @property
    def kept(self) -> int:
        """Frames the policy would have stored."""
        return sum(v[1] for v in self.hours.values())

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "policy": self.policy,
            "frames": self.frames,
            "would_store": self.kept,
            "by_source_hour": [
                {"source": s, "hour": h, "frames": v[0], "would_store": v[1]}
                for (s, h), v in sorted(self.hours.items())
            ],
            "labelled": self.labelled,
            "missed": [
                {"id": i, "source": s, "@timestamp": t, "label": lab}
                for i, s, t, lab in self.missed
            ],
            "unreadable": self.unreadable,
        }


def _label(rec: dict[str, Any], key: str) -> str | None:
    """The value of ``key`` in the record's metadata or labels when it marks the frame."""
    from .select import _truthy

    for where in ("meta", "labels"):
        v = (rec.get(where) or {}).get(key)
        if v is not None and _truthy(v):
            return str(v)
    return None


def replay(run: Run, policy: Select, *, labels: str | None = None, within: int = 1) -> Replay:
    """Apply ``policy`` to the stored frames of ``run`` (which it never changes). A labelled
    frame is *missed* when neither it nor the ``within`` frames of its source after it would be
    stored (``changed`` stores a change at its second frame)."""
    out = Replay(policy.spec())
    by_source: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in run.records():
        by_source[rec["image"]["source"]].append(rec)
    selector = Selector(Claims(MemoryStore("replay"), "replay"), seed=0)
    for source, recs in sorted(by_source.items()):
        recs.sort(key=lambda r: (r["@timestamp"], r["imagelog"]["writer"], r["image"]["seq"]))
        keeps: list[bool] = []
        for rec in recs:
            created = iso_ns(rec["event"]["created"])
            captured = iso_ns(rec["@timestamp"])
            pixels = None
            if policy.needs_pixels:
                try:
                    pixels = run.load(rec)
                except Exception:
                    out.unreadable += 1
            meta = dict(rec.get("meta") or {})
            meta.setdefault("labels", rec.get("labels") or {})
            keep = selector.decide(policy, source, pixels, meta, captured, created) is None
            row = out.hours.setdefault((source, hour_of(captured)), [0, 0])
            row[0] += 1
            row[1] += keep
            keeps.append(keep)
        if labels:
            for i, rec in enumerate(recs):
                value = _label(rec, labels)
                if value is None:
                    continue
                out.labelled += 1
                if not any(keeps[i : i + within + 1]):
                    out.missed.append((rec["image"]["id"], source, rec["@timestamp"], value))
    return out


def cmd_select(args: argparse.Namespace) -> int:
    """Replay a policy over a run and print what it would have stored."""
    policy = args.policy
    run = read(args.run)
    result = replay(run, policy, labels=args.labels, within=args.within)
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    if not result.frames:
        print(f"imagelog select: {run.url} holds no stored frames to replay", file=sys.stderr)
        return 1
    w = max(6, *(len(s) for s, _ in result.hours))
    print(f"policy: {result.policy}")
    print(f"{'source':<{w}}  {'hour':<13}  {'frames':>7}  {'kept':>7}  {'share':>6}")
    for (source, hour), (n, kept) in sorted(result.hours.items()):
        print(f"{source:<{w}}  {hour:<13}  {n:>7}  {kept:>7}  {kept / n:>6.1%}")
    total, kept = result.frames, result.kept
    print(f"{'total':<{w}}  {'':<13}  {total:>7}  {kept:>7}  {kept / total:>6.1%}")
    if result.unreadable:
        print(f"{result.unreadable} frame(s) could not be read and were counted as changed")
    if args.labels:
        print(f"labelled ({args.labels}): {result.labelled} frame(s), {len(result.missed)} "
              f"missed (neither it nor the {args.within} frame(s) after it kept)")  # fmt: skip
        for rid, source, ts, value in result.missed[: args.limit]:
            print(f"  {rid}  {source}  {ts}  {args.labels}={value}")
        if len(result.missed) > args.limit:
            print(f"  ... and {len(result.missed) - args.limit} more (--limit, --json)")
    sys.stdout.flush()
    return 0


def add_select_commands(sub: Any) -> None:
    """Add ``select`` to the CLI's subparsers."""
    sp = sub.add_parser(
        "select", help="replay a select= policy over a stored run: what it would have kept"
    )
    add_run(sp)
    sp.add_argument(
        "--policy",
        required=True,
        type=_policy,
        help="e.g. 'changed', 'changed(0.02), every(at_least=10m)'",
    )
    sp.add_argument("--labels", metavar="KEY", help="report labelled frames (meta or labels KEY)")
    sp.add_argument(
        "--within", type=count(), default=1,
        help="a labelled frame counts as caught when one of the N frames after it is kept (1)",
    )  # fmt: skip
    sp.add_argument("--limit", type=count(), default=20, help="missed frames listed (20)")
    sp.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    sp.set_defaults(func=cmd_select)


def _policy(text: str) -> Select:
    """``--policy``: the policy string ``select=`` takes (a mistake is a usage error)."""
    try:
        return parse(text)
    except InvalidSetting as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("select: ")) from None

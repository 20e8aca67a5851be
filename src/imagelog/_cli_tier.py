"""``imagelog tier``: one retention-tier pass over a run (cron, catching up); and an id's history
for ``imagelog show RUN ID --history``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .cli import add_run, time_arg
from .errors import InvalidSetting
from .inputs import iso_ns
from .tiers import Tier, history, ladders_of, load_ladders, run_pass

__all__ = ["add_tier_commands", "parse_step", "print_history"]

_KEYS = ("format", "thin", "thumbnail", "max_bytes")


def parse_step(text: str) -> Tier:
    """``AFTER:KIND[=VALUE][,max_bytes=N]``: ``1d:format=preview``, ``7d:thin=10s``,
    ``30d:thumbnail=512``, ``365d:delete``."""
    after, sep, rest = text.partition(":")
    if not sep or not after.strip() or not rest.strip():
        raise InvalidSetting(
            f"--step {text!r}: write AFTER:WHAT, e.g. 1d:format=preview, 7d:thin=10s, "
            "30d:thumbnail=512, 365d:delete"
        )
    kw: dict[str, Any] = {}
    for item in rest.split(","):
        key, eq, value = item.strip().partition("=")
        key = key.strip()
        if key == "delete" and not eq:
            kw["delete"] = True
            continue
        if key not in _KEYS or not eq or not value.strip():
            raise InvalidSetting(
                f"--step {text!r}: {item.strip()!r} is not one of format=SPEC, thin=INTERVAL, "
                "thumbnail=PIXELS, delete, max_bytes=SIZE"
            )
        if key == "thumbnail":
            try:
                kw[key] = int(value)
            except ValueError:
                raise InvalidSetting(
                    f"--step {text!r}: thumbnail takes pixels, got {value!r}"
                ) from None
        else:
            kw[key] = value.strip()
    return Tier(after=after.strip(), **kw)


def _as_of(text: str | None) -> int | None:
    """``--as-of`` (already read by ``time_arg``) as Unix nanoseconds."""
    return None if text is None else iso_ns(text)


def cmd_tier(args: argparse.Namespace) -> int:
    """Run one pass; print what it did (or would do) per step."""
    now = _as_of(args.as_of)
    from .run import read

    run = read(args.run)  # RunNotFound names a wrong path
    store = run.store
    if args.step:
        ladders = ladders_of(args.step)
    else:
        ladders = load_ladders(store)
        if not ladders:
            print(f"imagelog tier: {args.run} has no ladder: give --step (e.g. --step "
                  "1d:format=preview), or log with imagelog.open(..., tiers=[...])",
                  file=sys.stderr)  # fmt: skip
            return 2
    from ._cli_storage import _progress

    with _progress("tiering" if not args.dry_run else "planning", args.json) as update:
        report = run_pass(store, ladders, now_ns=now, dry_run=args.dry_run, progress=update)
    if report.busy:
        print(f"imagelog tier: another tier pass is running on {args.run} (it holds tiers.lock); "
              "try again later", file=sys.stderr)  # fmt: skip
        return 1
    out = {
        "as_of": report.as_of,
        "dry_run": report.dry_run,
        "hours": report.hours,
        "frames": report.frames,
        "tiered": report.tiered,
        "thinned": report.thinned,
        "deleted": report.deleted,
        "exempt": report.exempt,
        "failed": report.failed,
        "cleaned": report.cleaned,
        "by_step": report.by_step,
        "cpu_s": round(report.cpu_s, 3),
        "errors": report.errors[:20],
    }
    if args.json:
        print(json.dumps(out))
        return 1 if report.failed else 0
    would = "would " if args.dry_run else ""
    print(f"as of {report.as_of}: {report.frames} frame(s) in {report.hours} hour(s) looked at")
    for name, n in report.by_step.items():
        print(
            f"  step {name}: {would}{'re-encode' if 'format' in name or 'thumbnail' in name else 'remove'} {n}"
        )
    print(f"  {would}re-encode {report.tiered}, {would}thin {report.thinned}, {would}delete "
          f"{report.deleted}; exempt (keep) {report.exempt}; cleaned up {report.cleaned}")  # fmt: skip
    for err in report.errors[:20]:
        print(f"  failed: {err}", file=sys.stderr)
    return 1 if report.failed else 0


def print_history(run: Any, rid: str) -> int:
    """Print every index line that names an id, oldest first: how its frame came to be as it is."""
    rows = history(run.store, rid)
    if not rows:
        print(f"imagelog show: no record with id {rid!r} in {run.url}", file=sys.stderr)
        return 1
    for rec in rows:
        ev = rec.get("event") or {}
        action = ev.get("action", "")
        when = ev.get("created", "")
        il = rec.get("imagelog") or {}
        if action == "logged":
            f, im = rec.get("file") or {}, rec.get("image") or {}
            what = (f"{f.get('path')} ({im.get('format')} {im.get('width')}x{im.get('height')}, "
                    f"{f.get('size')} bytes)")  # fmt: skip
        elif action == "tiered":
            t = il.get("tiered") or {}
            f, im = t.get("file") or {}, t.get("image") or {}
            what = (f"step {t.get('step')} (after {t.get('after')}, {ev.get('reason')}): "
                    f"{(t.get('from') or {}).get('path')} -> {f.get('path')} ({im.get('format')} "
                    f"{im.get('width')}x{im.get('height')}, {f.get('size')} bytes)")  # fmt: skip
        else:
            what = str(rec.get("message", ""))
        print(f"{when}  {action:<16} {what}")
    return 0


def add_tier_commands(sub: Any) -> None:
    """Add ``tier`` to the CLI's subparsers."""
    t = sub.add_parser("tier", help="move old frames down the retention ladder (one pass)")
    add_run(t)
    t.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    t.add_argument("--as-of", metavar="TIME", type=time_arg,
                   help="judge ages as if it were TIME (ISO 8601 or Unix seconds)")  # fmt: skip
    t.add_argument("--step", action="append", metavar="AFTER:WHAT", type=_step,
                   help="a ladder step (repeatable): 1d:format=preview, 7d:thin=10s, "
                        "30d:thumbnail=512, 365d:delete[,max_bytes=SIZE]; default: the ladder "
                        "the run's writers were opened with")  # fmt: skip
    t.add_argument("--json", action="store_true", help="one JSON object instead of text")
    t.set_defaults(func=cmd_tier)


def _step(text: str) -> Tier:
    """``--step``: a ladder step (a mistake is a usage error naming the step)."""
    try:
        return parse_step(text)
    except ValueError as exc:  # InvalidSetting too
        raise argparse.ArgumentTypeError(f"{text}: {exc}") from None

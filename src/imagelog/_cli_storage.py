"""The storage verbs of the command line: ``imagelog purge | verify | reindex``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .audit import reindex, verify
from .cli import (
    UsageError,
    _human_bytes,
    add_run,
    count,
    duration,
    fraction,
    run_title,
    size,
    stdout_console,
)
from .index.recover import live_writers, repair
from .retention import Retention, Step
from .run import read

__all__ = ["add_storage_commands", "cmd_purge", "cmd_reindex", "cmd_verify"]


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def _progress(what: str, quiet: bool) -> Iterator[Any]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    if quiet:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns, TimeRemainingColumn(), console=_stderr_console(), transient=True
    ) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def cmd_purge(args: argparse.Namespace) -> int:
    """Purge a run down to an age and/or size limit, oldest hours first; ``--dry-run`` shows."""
    if args.older_than is None and args.max_bytes is None and args.min_free is None:
        raise UsageError("give --older-than, --max-bytes and/or --min-free")
    run = read(args.run)
    retention = Retention(
        run.store,
        max_age=args.older_than,
        max_bytes=args.max_bytes,
        min_free_bytes=args.min_free,
        keep_label=not args.ignore_keep_label,
    )
    con = _stderr_console()
    with con.status("counting the run's partitions…"):
        retention.scan()
    before = retention.total
    with _progress("purging" if not args.dry_run else "planning", args.json) as update:

        def step_progress(step: Step, i: int, n: int) -> None:
            update(i, n)

        try:
            results = retention.enforce(dry_run=args.dry_run, progress=step_progress)
        finally:
            retention.close()  # on s3:// the purged events go up as an index part now
            run.store.close()  # and the store's part thread stops
    freed = sum(r.bytes for r in results)
    summary = {
        "run": run.url,
        "dry_run": args.dry_run,
        "bytes_before": before,
        "bytes_after": before - freed if args.dry_run else retention.total,
        "purged_bytes": freed,
        "purged_files": sum(r.files for r in results),
        "kept": sum(r.kept for r in results),
        "partitions": [
            {
                "hour": r.hour,
                "reason": r.reason,
                "whole": r.whole,
                "files": r.files,
                "bytes": r.bytes,
                "kept": r.kept,
            }
            for r in results
        ],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    from rich.table import Table

    verb = "would purge" if args.dry_run else "purged"
    table = Table(title=f"{run_title(args.run)}: {verb} {len(results)} partition(s)")
    for col in ("hour (UTC)", "reason", "scope", "images", "bytes", "kept"):
        table.add_column(
            col, justify="left" if col in ("hour (UTC)", "reason", "scope") else "right"
        )
    for r in results:
        scope = "whole hour" if r.whole else "oldest files"
        table.add_row(r.hour, r.reason, scope, str(r.files), _human_bytes(r.bytes), str(r.kept))

    out = stdout_console()
    if results:
        out.print(table)
    out.print(
        f"{verb} {summary['purged_files']} image(s), {_human_bytes(freed)}; "
        f"run: {_human_bytes(before)} -> {_human_bytes(summary['bytes_after'])}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check hashes, decode a sample, find missing files, torn lines and orphans; 1 on damage."""
    run = read(args.run)
    if args.repair:
        for fixed in repair(run.store):
            print(f"repaired {fixed.key}: {fixed.lines} torn line(s) moved to {fixed.quarantine}",
                  file=sys.stderr)  # fmt: skip
    sample = 1.0 if args.all else args.sample
    with _progress("verifying", args.json) as update:
        report = verify(run, sample=sample, hashes=not args.no_hash, progress=update)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 1 if report.damaged else 0
    from rich.table import Table

    out = stdout_console()
    counts = report.counts()
    table = Table(
        title=f"{run_title(args.run)}: {report.records} record(s) in {report.segments} segment(s)"
    )
    table.add_column("check")
    table.add_column("result", justify="right")
    table.add_row("image files", str(report.files))
    table.add_row("hashes checked", str(report.hashed))
    table.add_row(f"decoded ({sample:.0%} sample)", str(report.decoded))
    table.add_row("purged (tombstoned)", str(report.purged))
    labels = {"missing": "missing files", "size": "wrong size (truncated)", "hash": "hash mismatch",
              "decode": "undecodable", "torn": "torn index lines",
              "damaged": "damaged, no line (unadoptable)", "orphan": "orphans (no line)"}  # fmt: skip
    for kind, label in labels.items():
        n = counts[kind]
        style = "green" if not n else ("yellow" if kind == "orphan" else "bold red")
        table.add_row(label, f"[{style}]{n}[/{style}]")
    out.print(table)
    for f in report.findings[: args.limit]:
        out.print(
            f"  {f.kind:8} {f.key}  {f.detail}", markup=False, highlight=False, soft_wrap=True
        )
    if len(report.findings) > args.limit:
        out.print(f"  … and {len(report.findings) - args.limit} more (--limit, --json)")
    if report.damaged:
        out.print(f"[bold red]DAMAGED[/]: see above. {damage_advice(counts)}", soft_wrap=True)
        return 1
    note = (
        f" ({counts['orphan']} orphan(s): `imagelog reindex` adopts them)"
        if counts["orphan"]
        else ""
    )
    out.print(f"[green]OK[/]: no damage{note}")
    return 0


def damage_advice(counts: dict[str, int]) -> str:
    """What to do about what ``verify`` found: only what the tools actually do."""
    advice = []
    if counts["torn"]:
        advice.append("`imagelog verify --repair` moves torn index lines to quarantine/")
    if any(counts[k] for k in ("missing", "size", "hash", "decode", "damaged")):
        advice.append(
            "imagelog cannot mend an image: restore damaged or missing files from a copy, or "
            "delete them (reindex keeps their records and these findings as they are)"
        )
    return "; ".join(advice) + "."


def cmd_reindex(args: argparse.Namespace) -> int:
    """Rebuild the index from the records embedded in the images (or their sidecars)."""
    run = read(args.run)
    live = live_writers(run.store)
    if live and not args.force:
        raise UsageError(f"writers still running: {', '.join(live)}; stop them (or --force)")
    t0 = time.perf_counter()
    with _progress("reading images", args.json) as update:
        report = reindex(run.store, progress=update)
    summary = {
        "run": run.url,
        "images": report.images,
        "records": report.records,
        "events": report.events,
        "segments": report.segments,
        "removed_segments": report.removed,
        "unrecoverable": report.unrecoverable,
        "damaged": report.damaged,
        "missing": report.missing,
        "lone_sidecars_quarantined": report.lone_sidecars,
        "shards_cut": report.cut,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"reindexed {args.run}: {report.records} of {report.images} image(s) recovered, "
              f"{report.events} event line(s) kept, {report.segments} segment(s) written, "
              f"{report.removed} removed")  # fmt: skip
        for key in report.unrecoverable:
            print(f"  not adopted (a damaged event names it): {key}")
        for key in report.damaged:
            print(f"  bytes differ from the record (kept as recorded): {key}")
        for rid in report.missing:
            print(f"  image missing (record kept): {rid}")
        for key in report.cut:
            print(f"  torn tail cut back to the last whole member: {key}")
    return 1 if report.unrecoverable or report.damaged or report.missing else 0


def add_storage_commands(sub: Any) -> None:
    """Add ``purge``, ``verify`` and ``reindex`` to the CLI's subparsers."""
    pu = sub.add_parser("purge", help="delete the oldest hours down to an age or size limit")
    add_run(pu)
    pu.add_argument("--older-than", metavar="AGE", type=duration(),
                    help="purge hours older than AGE (e.g. 7d)")  # fmt: skip
    pu.add_argument("--max-bytes", metavar="SIZE", type=size(0),
                    help="purge oldest first down to SIZE (50G)")  # fmt: skip
    pu.add_argument("--min-free", metavar="SIZE", type=size(0),
                    help="purge until SIZE is free on the disk")  # fmt: skip
    pu.add_argument("--dry-run", action="store_true", help="show what would go; delete nothing")
    pu.add_argument("--ignore-keep-label", action="store_true",
                    help='purge records labelled keep="1" too')  # fmt: skip
    pu.add_argument("--json", action="store_true")
    pu.set_defaults(func=cmd_purge)

    ve = sub.add_parser(
        "verify", help="check hashes, decode, find torn lines, missing files, orphans"
    )
    add_run(ve)
    ve.add_argument("--sample", type=fraction, default=0.1,
                    help="fraction of images to decode, 0..1 (default 0.1)")  # fmt: skip
    ve.add_argument("--all", action="store_true", help="decode every image")
    ve.add_argument("--no-hash", action="store_true", help="skip the sha256 check")
    ve.add_argument("--repair", action="store_true",
                    help="first quarantine torn lines of writers that are gone")  # fmt: skip
    ve.add_argument("--limit", type=count(), default=20, help="findings to list (default 20)")
    ve.add_argument("--json", action="store_true")
    ve.set_defaults(func=cmd_verify)

    ri = sub.add_parser("reindex", help="rebuild the index from the images' embedded records")
    add_run(ri)
    ri.add_argument("--force", action="store_true", help="even while writers seem to run")
    ri.add_argument("--json", action="store_true")
    ri.set_defaults(func=cmd_reindex)

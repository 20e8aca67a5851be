"""The query verbs of the command line: ``compact``, ``query``, ``export``, ``tail``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .run import read

__all__ = ["add_query_commands"]


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def cmd_compact(args: argparse.Namespace) -> int:
    """Compact the closed hours of a run into Parquet."""
    from rich.progress import Progress

    from .compact import compact

    run = read(args.run)
    with Progress(transient=True, disable=args.json or not sys.stderr.isatty()) as bar:
        task = bar.add_task("compacting", total=None)
        report = compact(
            run.store,
            grace_ns=int(args.grace * 1e9),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    from rich.table import Table

    from .cli import _human_bytes

    s = report.to_dict()
    table = Table(title=f"{run.url}: {len(report.compacted)} hour(s) compacted")
    for col in ("hour", "writer", "records", "JSON Lines", "Parquet", "s"):
        table.add_column(col, justify="left" if col in ("hour", "writer") else "right")
    for c in report.compacted:
        table.add_row(c.hour, c.writer, str(c.records), _human_bytes(c.bytes_in),
                      _human_bytes(c.bytes_out), f"{c.seconds:.2f}")  # fmt: skip
    con = _console()
    con.print(table)
    con.print(f"{s['records']} records, {_human_bytes(s['bytes_in'])} of JSON Lines -> "
              f"{_human_bytes(s['bytes_out'])} of Parquet; {len(report.finished)} leftover "
              f"segment(s) removed; {len(report.skipped)} open hour(s) left as JSON Lines")  # fmt: skip
    return 0


def add_query_commands(sub: Any) -> None:
    """Add ``compact`` (and the other query verbs) to the CLI's subparsers."""
    c = sub.add_parser("compact", help="turn closed hours into Parquet (docs/query.md)")
    c.add_argument("run")
    c.add_argument("--grace", type=float, default=120.0, metavar="S",
                   help="an hour is closed this many seconds after it ends (default 120)")  # fmt: skip
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compact)

"""The query verbs of the command line: ``compact``, ``query``, ``export``, ``tail``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .cli import (
    UsageError,
    add_run,
    count,
    duration,
    run_title,
    size,
    stdout_console,
    time_arg,
)
from .run import read

__all__ = ["add_query_commands"]


def _stderr() -> Any:
    """Progress bars go to stderr: stdout carries only the verb's output."""
    from rich.console import Console

    return Console(stderr=True)


def cmd_compact(args: argparse.Namespace) -> int:
    """Compact the closed hours of a run into Parquet."""
    from rich.progress import Progress

    from .compact import compact

    run = read(args.run)
    with Progress(
        transient=True, console=_stderr(), disable=args.json or not sys.stderr.isatty()
    ) as bar:
        task = bar.add_task("compacting", total=None)
        report = compact(
            run.store,
            grace_ns=round(args.grace * 1e9),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    from rich.table import Table

    from .cli import _human_bytes

    s = report.to_dict()
    table = Table(title=f"{run_title(args.run)}: {len(report.compacted)} hour(s) compacted")
    for col in ("hour", "writer", "records", "JSON Lines", "Parquet", "s"):
        table.add_column(col, justify="left" if col in ("hour", "writer") else "right")
    for c in report.compacted:
        table.add_row(c.hour, c.writer, str(c.records), _human_bytes(c.bytes_in),
                      _human_bytes(c.bytes_out), f"{c.seconds:.2f}")  # fmt: skip
    con = stdout_console()
    con.print(table)
    con.print(f"{s['records']} records, {_human_bytes(s['bytes_in'])} of JSON Lines -> "
              f"{_human_bytes(s['bytes_out'])} of Parquet; {len(report.finished)} leftover "
              f"segment(s) removed; {len(report.skipped)} open hour(s) left as JSON Lines; "
              f"{len(report.refreshed)} compacted file(s) whose images a purge or a tier "
              "changed written again")  # fmt: skip
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Run SQL over the records view; print a table or write CSV / JSON lines / Parquet."""
    from .records import sql_str, with_retry

    run = read(args.run)
    outputs = [(fmt, path) for fmt, path in (("csv", args.csv), ("json", args.json),
                                             ("parquet", args.parquet)) if path]  # fmt: skip
    sql = args.sql.strip().rstrip(";")
    if not sql:
        raise UsageError("the SQL is empty: give e.g. select count(*) from records")
    if outputs:
        fmt, path = outputs[0]
        if path == "-" and fmt == "parquet":
            raise UsageError("--parquet - : Parquet goes to a file, not to stdout")
        options = {"csv": "FORMAT csv, HEADER", "json": "FORMAT json", "parquet": "FORMAT parquet"}

        def write(con: Any) -> int:
            con.execute(f"COPY ({sql}) TO {sql_str(target)} ({options[fmt]})")
            return int(con.sql(f"SELECT count(*) FROM ({sql})").fetchall()[0][0])

        if path != "-":
            target = path
            folder = os.path.dirname(os.path.abspath(path))
            written = with_retry(run.store, write, writes=[folder])
            print(f"wrote {written} row(s) to {path}", file=sys.stderr)
            return 0
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="imagelog-query-") as tmp:  # `--csv -`: stdout
            target = f"{tmp}/out.{fmt}"
            with_retry(run.store, write, writes=[tmp])
            with open(target, "rb") as fh:
                sys.stdout.flush()
                shutil.copyfileobj(fh, sys.stdout.buffer)
        return 0

    def fetch(con: Any) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
        rel = con.sql(sql)
        if rel is None:  # a statement without a result
            return [], [], []
        return rel.columns, [str(t) for t in rel.types], rel.limit(args.limit + 1).fetchall()

    columns, types, rows = with_retry(run.store, fetch)
    from rich.table import Table

    more = len(rows) > args.limit
    rows = rows[: args.limit]
    title = f"{len(rows)} row(s)" + (f" (the first {args.limit}; --limit)" if more else "")
    table = Table(title=title)
    for col, typ in zip(columns, types, strict=True):
        numeric = any(t in typ for t in ("INT", "DOUBLE", "FLOAT", "DECIMAL"))
        table.add_column(col, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    stdout_console().print(table)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export records as an image folder, WebDataset shards or Parquet."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .export import export

    run = read(args.run)
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    quiet = args.json or not sys.stderr.isatty()
    with Progress(*columns, transient=True, console=_stderr(), disable=quiet) as bar:
        task = bar.add_task(f"export to {args.to}", total=None)
        options: dict[str, Any] = {
            "to": args.to,
            "where": args.where,
            "source": args.source,
            "since": args.since,
            "until": args.until,
            "image_format": args.image_format,
            "shard_bytes": args.shard_size,
            "progress": lambda done, total: bar.update(task, completed=done, total=total),
        }
        if args.engine == "ray":  # one Ray task per index hour (docs/fleet.md)
            from .ray import export as export_ray

            report = export_ray(run.url, args.out, **options)
        else:
            report = export(run, args.out, **options)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    from .cli import _human_bytes

    con = stdout_console()
    con.print(f"[bold]{report.out}[/bold]: {report.samples} sample(s), "
              f"{_human_bytes(report.bytes)} of images as {report.to}"
              + (f"; {report.skipped} already there (resumed)" if report.skipped else ""))  # fmt: skip
    if report.converted:
        con.print("converted (the target cannot read the stored format): "
                  + ", ".join(f"{k} {v}" for k, v in report.converted.items()))  # fmt: skip
    gaps = ", ".join(f"{k} {v}" for k, v in sorted(report.gaps.items())) or "none"
    con.print(f"gaps (listed in gaps.jsonl): {gaps}")
    return 0


def _line(rec: dict[str, Any]) -> str:
    image, file, event = rec.get("image") or {}, rec.get("file") or {}, rec.get("event") or {}
    size = f"{image.get('width')}x{image.get('height')}" if "width" in image else ""
    parts = [
        str(rec.get("@timestamp", "")),
        str(image.get("source", "-")),
        str(event.get("action", "")),
        str(image.get("id") or event.get("id", "")),
        size,
        str(image.get("format", "")),
        str(file.get("path", "") or event.get("reason", "") or ""),
        str(rec.get("message", "") or ""),
    ]
    return "  ".join(p for p in parts if p)


def cmd_tail(args: argparse.Namespace) -> int:
    """Print the newest records; with -f, follow every writer's new records until Ctrl-C."""
    from .cli import newest
    from .tail import follow

    run = read(args.run)

    def show(rec: dict[str, Any]) -> None:
        print(json.dumps(rec) if args.json else _line(rec), flush=True)

    try:
        if args.lines:
            recs = newest(
                run, args.lines, source=args.source, include_events=True, where=args.where
            )
            for rec in recs:
                show(rec)
        if args.follow:
            for rec in follow(run.store, source=args.source, where=args.where, poll=args.poll):
                show(rec)
    except KeyboardInterrupt:
        return 0
    return 0


_GRACE_WHY = " (writers may still add lines to a younger hour)"


def add_query_commands(sub: Any) -> None:
    """Add ``compact`` (and the other query verbs) to the CLI's subparsers."""
    from .compact import GRACE_NS

    c = sub.add_parser("compact", help="turn closed hours into Parquet (docs/query.md)")
    add_run(c)
    c.add_argument("--grace", type=duration(GRACE_NS / 1e9, why=_GRACE_WHY), default=GRACE_NS / 1e9, metavar="S",
                   help=f"an hour is closed this long after it ends (seconds or e.g. 10m; "
                        f"at least and by default {GRACE_NS // 10**9})")  # fmt: skip
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compact)

    q = sub.add_parser(
        "query", help="SQL over the records view: a table, or --csv/--json/--parquet"
    )
    add_run(q)
    q.add_argument("sql", help='e.g. "select source, count(*) from records group by 1"')
    out = q.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="FILE", help="write CSV to FILE (- for stdout)")
    out.add_argument("--json", metavar="FILE", help="write JSON lines to FILE (- for stdout)")
    out.add_argument("--parquet", metavar="FILE", help="write Parquet to FILE")
    q.add_argument("--limit", type=count(1), default=100, help="rows in the table (default 100)")
    q.set_defaults(func=cmd_query)

    e = sub.add_parser("export", help="records as imagefolder, webdataset or parquet")
    add_run(e)
    e.add_argument("out", help="an empty folder, or an interrupted export of the same arguments")
    e.add_argument("--to", required=True, choices=("imagefolder", "webdataset", "parquet"))
    e.add_argument("--where", help="an SQL condition on the records view")
    e.add_argument("--source")
    e.add_argument("--since", type=time_arg,
                   help="@timestamp from (ISO 8601, no zone: local time; or Unix seconds)")  # fmt: skip
    e.add_argument("--until", type=time_arg,
                   help="@timestamp before (ISO 8601, no zone: local time; or Unix seconds)")  # fmt: skip
    e.add_argument("--image-format", default="keep", choices=("keep", "png", "tiff", "jpeg"),
                   help="keep (convert only what the target cannot read), png, tiff or jpeg")  # fmt: skip
    e.add_argument("--shard-size", type=size(), default="512MB",
                   help="webdataset/parquet shard size (512MB)")  # fmt: skip
    e.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local (this process) or ray (one task per index hour; docs/fleet.md)")  # fmt: skip
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.set_defaults(func=cmd_export)

    t = sub.add_parser("tail", help="the newest records; -f follows new ones until Ctrl-C")
    add_run(t)
    t.add_argument("-f", "--follow", action="store_true", help="then follow new records")
    t.add_argument("-n", "--lines", type=count(), default=10,
                   help="print the newest N records, oldest first (default 10; 0: none)")  # fmt: skip
    t.add_argument("--source")
    t.add_argument("--where", help="an SQL condition on the records view")
    t.add_argument("--json", action="store_true", help="records as JSON lines")
    t.add_argument("--poll", type=float, default=0.5, help=argparse.SUPPRESS)
    t.set_defaults(func=cmd_tail)

"""The command line: ``imagelog ls | stats | show | view``; one ``cmd_<verb>`` function per subcommand.

``purge``, ``verify`` and ``reindex`` live in ``_cli_storage.py``; ``trigger`` in ``_cli_ring.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tarfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import codecs
from .errors import ImageLogError
from .run import Run, read

__all__ = ["main"]


def _stdout_console() -> Any:
    from rich.console import Console

    # a pipe or a file gets full rows rather than columns squeezed to 80 characters
    return Console(width=None if sys.stdout.isatty() else 200)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def cmd_ls(args: argparse.Namespace) -> int:
    """A table of the most recent records."""
    from rich.table import Table

    run = read(args.run)
    shown = newest(
        run, args.limit or None, source=args.source, include_events=args.all, where=args.where
    )
    if args.json:
        for rec in shown:
            print(json.dumps(rec))
        return 0
    what = f"the last {len(shown)}" if args.limit else f"all {len(shown)}"
    table = Table(title=f"{run.url}: {what} records")
    for col in ("id", "@timestamp", "source", "event", "size", "format", "bytes", "message"):
        table.add_column(col, no_wrap=col in ("id", "@timestamp"))
    for rec in shown:
        image, file = rec.get("image", {}), rec.get("file", {})
        table.add_row(
            str(image.get("id") or rec.get("event", {}).get("id", "")),
            rec.get("@timestamp", ""),
            image.get("source", ""),
            rec.get("event", {}).get("action", ""),
            f"{image.get('width', '?')}x{image.get('height', '?')}",
            str(image.get("format", "")),
            _human_bytes(file["size"]) if "size" in file else "",
            rec.get("message", ""),
        )
    _stdout_console().print(table)
    return 0


def newest(
    run: Run,
    limit: int | None,
    *,
    source: str | None = None,
    include_events: bool = False,
    where: str | None = None,
) -> list[dict[str, Any]]:
    """The newest ``limit`` records (all if None), oldest first; reads the newest hours only."""
    from .records import iter_records

    if limit is not None and limit < 0:
        raise ValueError(f"-n must be 0 (all) or more, got {limit}")
    if limit is None:
        return list(run.records(source=source, include_events=include_events, where=where))
    found = iter_records(run.store, source=source, include_events=include_events, where=where,
                         newest_first=True, limit=limit)  # fmt: skip
    return list(found)[::-1]


#: Record kinds ``stats`` counts per source besides stored images (every other kind is
#: counted in ``events``).
_PER_SOURCE = {"logged": "images", "dropped": "dropped", "failed": "failed"}


def summarise(run: Run) -> dict[str, Any]:
    """Counts and bytes by source, formats, time span, drops, failures, ring expiries, triggers
    and every other kind of record of a run (one SQL pass)."""
    from .records import list_files, with_retry

    rows = with_retry(run.store, lambda con: con.execute(
        "SELECT coalesce(source, '?'), coalesce(action, '?'), coalesce(reason, '?'), "
        "coalesce(format, '?'), count(*), coalesce(sum(bytes), 0), min(ts), max(ts), "
        "sum(CASE WHEN action = 'expired' THEN "
        "TRY_CAST(json_extract_string(record, '$.imagelog.expired.frames') AS BIGINT) END) "
        "FROM records GROUP BY ALL"
    ).fetchall())  # fmt: skip
    files = list_files(run.store)
    by_source: defaultdict[str, Counter[str]] = defaultdict(Counter)
    formats: Counter[str] = Counter()
    drops: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    events: Counter[str] = Counter()
    expired = 0
    first = last = None
    for src, action, reason, fmt, n, nbytes, lo, hi, frames in rows:
        if action in _PER_SOURCE:
            by_source[src][_PER_SOURCE[action]] += n
        if action == "logged":
            by_source[src]["bytes"] += nbytes
            formats[fmt] += n
            first = lo if first is None or (lo is not None and lo < first) else first
            last = hi if last is None or (hi is not None and hi > last) else last
            continue
        events[action] += n
        if action == "dropped":
            drops[reason] += n
        elif action == "failed":
            failures[reason] += n
        elif action == "encoding_warning":
            warnings[reason] += n
        elif action == "expired":
            expired += int(frames or 0)
    return {
        "url": run.url,
        "images": sum(c["images"] for c in by_source.values()),
        "bytes": sum(c["bytes"] for c in by_source.values()),
        "dropped": sum(drops.values()),
        "failed": sum(failures.values()),
        "expired": expired,
        "triggers": events.get("triggered", 0),
        "first": _iso(first),
        "last": _iso(last),
        "by_source": {s: dict(c) for s, c in sorted(by_source.items())},
        "formats": dict(formats),
        "drops_by_reason": dict(drops),
        "failures_by_reason": dict(failures),
        "encoding_warnings_by_kind": dict(warnings),
        "events": dict(sorted(events.items())),
        "writers": len(files.writers),
    }


def _iso(ts: Any) -> str | None:
    """A DuckDB TIMESTAMPTZ as the records write it: ``2026-11-24T19:00:00.123456Z``."""
    if ts is None:
        return None
    text: str = ts.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return text


def cmd_stats(args: argparse.Namespace) -> int:
    """Counts and bytes by source, formats, time span, drops."""
    from rich.table import Table

    s = summarise(read(args.run))
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    con = _stdout_console()
    con.print(f"[bold]{s['url']}[/bold]: {s['images']} images, {_human_bytes(s['bytes'])}, "
              f"{s['dropped']} dropped, {s['failed']} failed, {s['expired']} expired, "
              f"{s['triggers']} trigger(s), {s['writers']} writer(s)")  # fmt: skip
    con.print(f"time span: {s['first']} .. {s['last']}")
    table = Table(title="by source")
    for col in ("source", "images", "bytes", "dropped", "failed"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for src, c in s["by_source"].items():
        table.add_row(src, str(c.get("images", 0)), _human_bytes(c.get("bytes", 0)),
                      str(c.get("dropped", 0)), str(c.get("failed", 0)))  # fmt: skip
    con.print(table)
    con.print("formats: " + (", ".join(f"{k} {v}" for k, v in s["formats"].items()) or "none"))
    if s["drops_by_reason"]:
        con.print("drops: " + ", ".join(f"{k} {v}" for k, v in s["drops_by_reason"].items()))
    if s["failures_by_reason"]:
        con.print("failures: " + ", ".join(f"{k} {v}" for k, v in s["failures_by_reason"].items()))
    if s["events"]:
        con.print("records by kind: " + ", ".join(f"{k} {v}" for k, v in s["events"].items()))
    if s["encoding_warnings_by_kind"]:
        kinds = s["encoding_warnings_by_kind"].items()
        con.print("encoding warnings: " + ", ".join(f"{k} {v}" for k, v in kinds))
    return 0


def file_record(path: Path) -> dict[str, Any] | None:
    """The record embedded in an image file (or its ``.json`` sidecar), or None."""
    sidecar = path.with_name(path.name + ".json")
    if sidecar.exists():
        data: dict[str, Any] = json.loads(sidecar.read_text(encoding="utf-8"))
        return data
    return codecs.embedded_record(path.read_bytes())


def cmd_show(args: argparse.Namespace) -> int:
    """Print a record (by id in a run, or embedded in an image file); ``--open`` writes the image."""
    target = Path(args.target)
    if args.id is None and target.is_file():
        rec = file_record(target)
        if rec is None:
            tar = tarfile.is_tarfile(target)
            shard = " (a shard of small images: `tar xf` it, or show RUN ID)" if tar else ""
            print(f"imagelog: {target} carries no imagelog record{shard}", file=sys.stderr)
            return 1
        print(json.dumps(rec, indent=2))
        return 0
    if args.id is None:
        print("imagelog show: give RUN ID, or an image FILE", file=sys.stderr)
        return 2
    run = read(args.target)
    rec = run.get(args.id)
    print(json.dumps(rec, indent=2))
    if args.open is not None:
        data = run.read_bytes(rec)
        out = Path(args.open)
        if out.is_dir():
            out = out / Path(rec["file"].get("member") or rec["file"]["path"]).name  # a shard's
        out.write_bytes(data)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Serve the run to a browser (needs the ``view`` extra)."""
    try:
        from .viewer.server import main_serve
    except ImportError as exc:
        print(f"imagelog view needs the view extra: pip install 'imagelog[view]' ({exc})",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        return main_serve(args.run, host=args.host, port=args.port, open_browser=not args.no_browser,
                          allow_remote=args.allow_remote, cache_dir=args.cache_dir)  # fmt: skip
    except ValueError as exc:
        print(f"imagelog view: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one subparser per verb)."""
    p = argparse.ArgumentParser(prog="imagelog", description="Inspect runs written by imagelog.")
    sub = p.add_subparsers(dest="verb", required=True)

    ls = sub.add_parser("ls", help="a table of recent records")
    ls.add_argument("run")
    ls.add_argument("-n", "--limit", type=int, default=20, help="how many (0 = all)")
    ls.add_argument("--source")
    ls.add_argument("--all", action="store_true", help="include drops and other events")
    ls.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    ls.add_argument("--where", help="an SQL condition on the records view (docs/query.md)")
    ls.set_defaults(func=cmd_ls)

    st = sub.add_parser("stats", help="counts and bytes by source, formats, time span, drops")
    st.add_argument("run")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_stats)

    sh = sub.add_parser("show", help="a record by id (RUN ID), or the record inside an image FILE")
    sh.add_argument("target", help="a run folder/URL, or an image file")
    sh.add_argument("id", nargs="?", help="record id (or a unique prefix)")
    sh.add_argument("--open", metavar="PATH", help="write the image to PATH (a file or folder)")
    sh.set_defaults(func=cmd_show)

    vw = sub.add_parser("view", help="browse the run in a web page (timeline, grid, frames; live)")
    vw.add_argument("run")
    vw.add_argument("--port", type=int, default=0, help="0 (default): any free port")
    vw.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    vw.add_argument("--allow-remote", action="store_true",
                    help="allow a --host other machines can reach (prints a warning)")  # fmt: skip
    vw.add_argument("--no-browser", action="store_true", help="print the address, open nothing")
    vw.add_argument(
        "--cache-dir", help="thumbnails and the viewer's index (default ~/.cache/imagelog)"
    )
    vw.set_defaults(func=cmd_view)

    from ._cli_query import add_query_commands
    from ._cli_ring import add_ring_commands
    from ._cli_storage import add_storage_commands
    from .codec_bench import add_parser as add_bench

    add_storage_commands(sub)  # purge, verify, reindex
    add_query_commands(sub)  # compact, query, export, tail
    add_bench(sub)  # imagelog bench: codec speeds on this machine
    add_ring_commands(sub)  # trigger
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ImageLogError, KeyError, OSError, ImportError, ValueError) as exc:
        print(f"imagelog {args.verb}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if type(exc).__module__.lstrip("_").startswith("duckdb"):  # bad SQL: DuckDB says why
            print(f"imagelog {args.verb}: {exc}", file=sys.stderr)
            return 1
        raise

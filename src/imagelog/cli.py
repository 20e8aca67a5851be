"""The command line: ``imagelog ls | stats | show | view``; one ``cmd_<verb>`` function per subcommand.

``purge``, ``verify`` and ``reindex`` live in ``_cli_storage.py``; ``trigger`` in ``_cli_ring.py``;
``select`` in ``_cli_select.py``.
``main`` is the one error boundary: every failure a user can cause prints one line,
``imagelog VERB: <problem>``, and exits non-zero (2 for a usage error); the argument types below
refuse bad values before a verb runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import tarfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import codecs
from .errors import ImageLogError, RecordNotFound
from .run import Run, read

__all__ = ["DEBUG_ENV", "UsageError", "main"]

#: Set to 1 for the traceback of an unexpected error (as ``imagelog --debug`` does).
DEBUG_ENV = "IMAGELOG_DEBUG"
#: The longest message ``main`` prints (a DuckDB error may quote a 20 MB line).
_MAX_MESSAGE = 400
#: The module a missing import names -> the extra that installs it.
_EXTRAS = {"duckdb": "query", "pyarrow": "query", "starlette": "view", "uvicorn": "view",
           "obstore": "s3", "boto3": "s3", "botocore": "s3", "pyjpegxl": "fast-jxl",
           "cv2": "color"}  # fmt: skip


class UsageError(Exception):
    """A command line that cannot work as given (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``imagelog VERB: <problem> (see imagelog VERB --help)``."""

    verbs: dict[str, _Parser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message.replace(chr(39), '')} (see {self.prog} --help)\n")

    def unknown(self, extra: list[str]) -> NoReturn:
        """Refuse arguments the verb does not take, suggesting the option meant."""
        import difflib

        known = [o for action in self._actions for o in action.option_strings]
        hints = []
        for arg in extra:
            close = (
                difflib.get_close_matches(arg.split("=")[0], known, n=1) if arg[:1] == "-" else []
            )
            hints.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
        self.error(f"unrecognized arguments: {' '.join(hints)}")


# -- argument types: each refuses a bad value with a message argparse prints as one line --------
def run_arg(text: str) -> str:
    """A run folder or URL: not empty (an empty path would be the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the run must not be empty (a folder or s3:// URL)")
    return text


def count(minimum: int = 0, maximum: int = 10**9) -> Callable[[str], int]:
    """An int between ``minimum`` and ``maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text} is not a whole number") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {minimum}..{maximum}")
        return value

    return parse


def positive(maximum: float, *, zero: bool = False) -> Callable[[str], float]:
    """A number above 0 (or 0 too, with ``zero``), at most ``maximum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text} is not a number") from None
        low_ok = value >= 0.0 if zero else value > 0.0
        if not (low_ok and value <= maximum):  # nan fails this too
            low = "0" if zero else "above 0"
            raise argparse.ArgumentTypeError(
                f"{text} is out of range: give {low} up to {maximum:g}"
            )
        return value

    return parse


def fraction(text: str) -> float:
    """A number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number") from None
    if not 0.0 <= value <= 1.0:  # nan fails this too
        raise argparse.ArgumentTypeError(f"{text} is not a fraction: give 0..1 (1 = all)")
    return value


def duration(
    minimum: float = 0.0, maximum: float = 100 * 365 * 86400.0, why: str = ""
) -> Callable[[str], float]:
    """Seconds, or a duration such as ``30s``, ``2m``, ``7d``; at least ``minimum`` seconds
    (``why``: the reason for the minimum, appended to the error)."""
    from .settings import parse_duration

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            try:
                value = parse_duration(text, name="")
            except (ValueError, TypeError):
                raise argparse.ArgumentTypeError(
                    f"{text} is not a duration: give seconds or e.g. 30s, 12h, 7d"
                ) from None
        if not math.isfinite(value) or value > maximum:
            raise argparse.ArgumentTypeError(f"{text} is too long: give at most {maximum:g} s")
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"{text} is too short: give at least {minimum:g} s{why}"
            )
        return value

    return parse


def size(minimum: int = 1) -> Callable[[str], int]:
    """A byte count such as ``512MB`` or ``2GiB``, at least ``minimum``."""
    from .settings import parse_bytes

    def parse(text: str) -> int:
        try:
            value = parse_bytes(text, name="")
        except (ValueError, TypeError):
            raise argparse.ArgumentTypeError(
                f"{text} is not a size: give e.g. 500MB or 2GiB"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is too small: give at least {minimum} bytes")
        return value

    return parse


def time_arg(text: str) -> str:
    """A time as the records engine reads it (``records.parse_time``: ISO 8601, no zone = local
    time, or Unix seconds), in the form the records hold."""
    from .records import parse_time

    try:
        return parse_time(text, name="")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text} is not a time: give ISO 8601 such as 2026-11-24T19:00:00Z (no zone: local "
            "time) or Unix seconds"
        ) from None


def add_run(parser: argparse.ArgumentParser) -> None:
    """The ``run`` argument every verb that reads a run takes."""
    parser.add_argument("run", type=run_arg, help="the run: a folder, or an s3:// URL")


def stdout_console() -> Any:
    """The rich console of every verb's output on stdout: a pipe or a file gets full rows rather
    than columns squeezed to 80 characters, and a closed pipe raises ``BrokenPipeError`` (for
    ``main``) instead of rich's own exit."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console(width=None if sys.stdout.isatty() else 200)


def run_title(run: str) -> str:
    """A run as the user named it, for a rich title (never a machine's absolute path)."""
    from rich.markup import escape

    return escape(run)


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
    table = Table(title=f"{run_title(args.run)}: {what} records")
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
    stdout_console().print(table)
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
    and every other kind of record of a run (hour summaries where they hold, one SQL pass over
    the rest)."""
    from .records.summary import counts

    rows, files = counts(run.store)
    by_source: defaultdict[str, Counter[str]] = defaultdict(Counter)
    formats: Counter[str] = Counter()
    drops: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    events: Counter[str] = Counter()
    summed: Counter[str] = Counter()  # frames summary records stand for, by action
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
        if frames is not None:  # expired, not_selected, thinned (index.summary.SUMMED)
            summed[action] += int(frames)
    return {
        "url": run.url,
        "images": sum(c["images"] for c in by_source.values()),
        "bytes": sum(c["bytes"] for c in by_source.values()),
        "dropped": sum(drops.values()),
        "failed": sum(failures.values()),
        "expired": summed["expired"],
        "not_selected": summed["not_selected"],
        "thinned": summed["thinned"],
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
    con = stdout_console()
    con.print(f"[bold]{run_title(args.run)}[/bold]: {s['images']} images, {_human_bytes(s['bytes'])}, "
              f"{s['dropped']} dropped, {s['failed']} failed, {s['expired']} expired, "
              + "".join(f"{s[k]} {k.replace('_', ' ')}, " for k in ("not_selected", "thinned")
                        if s[k])
              + f"{s['triggers']} trigger(s), {s['writers']} writer(s)")  # fmt: skip
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
            shard = ""
            if tarfile.is_tarfile(target):
                shard = " (a shard of small images: tar xf it, or show RUN ID)"
            raise ValueError(f"{target} carries no imagelog record{shard}")
        print(json.dumps(rec, indent=2))
        return 0
    if args.id is None:
        raise UsageError("give RUN ID, or an image FILE")
    run = read(args.target)
    rec = run.get(args.id)
    if args.history:
        from ._cli_tier import print_history

        return print_history(run, str((rec.get("image") or {}).get("id") or args.id))
    out = None
    if args.open is not None:
        out = Path(args.open)
        if out.is_dir():
            out = out / Path(rec["file"].get("member") or rec["file"]["path"]).name  # a shard's
        data = image_as(run, rec, out.suffix)  # checked before anything is printed
    print(json.dumps(rec, indent=2))
    if out is not None:
        out.write_bytes(data)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def image_as(run: Run, rec: dict[str, Any], suffix: str) -> bytes:
    """A record's image in the format a file name's ``suffix`` says: the stored bytes when it is
    the stored format (or no suffix), else converted losslessly to PNG or TIFF (JPEG: quality 95).
    """
    from .export import encode_as

    file = rec.get("file") or {}
    stored = Path(str(file.get("member") or file.get("path", ""))).suffix.lower()  # a shard's
    want = suffix.lower()
    fmt = str((rec.get("image") or {}).get("format", "?"))
    if not want or want == stored:
        return run.read_bytes(rec)
    target = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg"}
    if want not in target:
        raise UsageError(
            f"cannot write a {fmt} image as {want}: name the file {stored}, .png, .tif or .jpg"
        )
    return encode_as(run.load(rec), target[want], what=f"a {fmt} image as {want}")


def cmd_view(args: argparse.Namespace) -> int:
    """Serve the run to a browser (needs the ``view`` extra)."""
    from .viewer.server import main_serve

    try:
        return main_serve(args.run, host=args.host, port=args.port, open_browser=not args.no_browser,
                          allow_remote=args.allow_remote, cache_dir=args.cache_dir)  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def build_parser() -> _Parser:
    """The argument parser (one subparser per verb)."""
    from . import __version__

    p = _Parser(prog="imagelog", description="Inspect runs written by imagelog.")
    p.add_argument("--version", action="version", version=f"imagelog {__version__}")
    p.add_argument("--debug", action="store_true",
                   help=f"show the traceback of an unexpected error (or {DEBUG_ENV}=1)")  # fmt: skip
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    p.verbs = sub.choices

    ls = sub.add_parser("ls", help="a table of recent records")
    add_run(ls)
    ls.add_argument("-n", "--limit", type=count(), default=20, help="how many (0 = all)")
    ls.add_argument("--source")
    ls.add_argument("--all", action="store_true", help="include drops and other events")
    ls.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    ls.add_argument("--where", help="an SQL condition on the records view (docs/query.md)")
    ls.set_defaults(func=cmd_ls)

    st = sub.add_parser("stats", help="counts and bytes by source, formats, time span, drops")
    add_run(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_stats)

    sh = sub.add_parser("show", help="a record by id (RUN ID), or the record inside an image FILE")
    sh.add_argument("target", type=run_arg, help="a run folder/URL, or an image file")
    sh.add_argument("id", nargs="?", help="record id (or a unique prefix)")
    sh.add_argument("--open", metavar="PATH",
                    help="write the image to PATH (a folder, or a file: .png, .tif and .jpg "
                         "convert)")  # fmt: skip
    sh.add_argument("--history", action="store_true",
                    help="every index line naming the id: logged, tiered, thinned, purged")  # fmt: skip
    sh.set_defaults(func=cmd_show)

    vw = sub.add_parser("view", help="browse the run in a web page (timeline, grid, frames; live)")
    add_run(vw)
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
    from ._cli_select import add_select_commands
    from ._cli_storage import add_storage_commands
    from ._cli_tier import add_tier_commands
    from .codec_bench import add_parser as add_bench

    add_storage_commands(sub)  # purge, verify, reindex
    add_query_commands(sub)  # compact, query, export, tail
    add_bench(sub)  # imagelog bench: codec speeds on this machine
    add_ring_commands(sub)  # trigger
    add_select_commands(sub)  # select (replay a policy)
    add_tier_commands(sub)  # tier
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Every failure prints one line, ``imagelog VERB: <problem>``: 2 for a usage error, 1 otherwise;
    an unexpected one adds how to see its traceback. A closed stdout (``| head``) ends quietly.
    """
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            parser.verbs[args.verb].unknown(extra)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        status = func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        status, message = describe(exc, args.verb)
        _say(f"imagelog {args.verb}: {message}")
        return status


def describe(exc: BaseException, verb: str = "") -> tuple[int, str]:
    """The exit status and the one-line message for an exception that reached ``main``."""
    if isinstance(exc, UsageError):
        return 2, _one_line(str(exc))
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in _EXTRAS:
        name = exc.name.split(".")[0]
        extra = "view" if verb == "view" else _EXTRAS[name]
        return 1, f"needs the {extra} extra: pip install 'imagelog[{extra}]' (no module {name})"
    if isinstance(exc, RecordNotFound):  # its message, not a KeyError's repr
        return 1, _one_line(str(exc.args[0]) if exc.args else "no such record")
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return 1, _one_line(f"{exc.strerror}: {exc.filename}")
    if isinstance(exc, ImageLogError | OSError | ValueError):
        return 1, _one_line(str(exc) or type(exc).__name__)
    if type(exc).__module__.lstrip("_").startswith("duckdb"):  # bad SQL: DuckDB says why
        return 1, _one_line(str(exc))
    hint = f"imagelog --debug VERB ... or {DEBUG_ENV}=1 shows the traceback"
    return 1, _one_line(f"unexpected {type(exc).__name__}: {exc}") + f" ({hint})"


def _one_line(text: str) -> str:
    """The first non-empty line of ``text``, at most ``_MAX_MESSAGE`` characters."""
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed too: nothing more to say
        pass


def _stdout_closed() -> int:
    """``imagelog ls RUN | head -1``: point stdout at /dev/null (Python flushes it again on exit)
    and exit as a process that SIGPIPE ended."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (captured in-process)
        pass
    return 141

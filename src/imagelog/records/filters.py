"""What a reader picks: the filters of ``Run.records()``, the CLI and the viewer, as SQL.

One parser for every reader. Keyword filters (``source``, ``since``, ``until``, events, an SQL
``where``) and the viewer's (labels, meta comparisons, level, text) become one SQL condition
over the ``records`` columns (``records.columns.COLUMNS``).

Times: ``parse_time`` is the one rule for the times a reader is given. An ISO 8601 time with a
zone (``Z``, ``+02:00``) means that moment; one without a zone is local time, as
``captured_at=`` of ``log()`` and ``imagelog trigger --at`` take it (``inputs.parse_time_ns``);
a plain number is Unix seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from typing import Any

from ..inputs import parse_time_ns
from ..record import iso_utc

__all__ = ["Filters", "filters_sql", "parse_time"]

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_META = re.compile(r"^(?P<key>[^=!<>~]+?)\s*(?P<op>!=|>=|<=|=|>|<|~)\s*(?P<value>.*)$")


def parse_time(value: str, *, name: str = "time") -> str:
    """A time as the records write it (``2026-11-24T19:00:00.000000Z``): ISO 8601 (no zone:
    local time) or Unix seconds. ``ValueError`` names ``name`` and the value otherwise."""
    text = str(value).strip()
    try:
        if _NUMBER.match(text):
            ns = parse_time_ns(float(text), name=name)
        else:
            ns = parse_time_ns(_dt.datetime.fromisoformat(text), name=name)
        return iso_utc(ns)
    except (ValueError, OverflowError, OSError):
        raise ValueError(
            f"{name} {value!r} is not a time: give ISO 8601 (2026-11-24T19:00:00Z; without a "
            "zone: local time) or Unix seconds"
        ) from None


def _json_path(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError(f"field name {key!r}: use letters, digits, '_', '-' and '.' for nesting")
    return "$." + ".".join(f'"{part}"' for part in key.split("."))


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _like(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


@dataclasses.dataclass(frozen=True)
class Filters:
    """What a reader picks; every field is optional.

    ``labels`` are ``key=value`` (or a bare ``key``: present); ``meta`` are ``key OP value`` with
    OP one of ``= != > >= < <= ~`` (``~``: contains, any case), or a bare ``key`` (present);
    nested fields are written with dots: ``camera.gain>2``. ``since``/``until``: see
    ``parse_time``. ``where``: an SQL condition on the ``records`` columns. ``events``: also the
    event rows (drops, purges, failures...), not only stored images.
    """

    sources: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    meta: tuple[str, ...] = ()
    level: str | None = None
    text: str | None = None
    since: str | None = None
    until: str | None = None
    where: str | None = None
    events: bool = False

    @classmethod
    def from_query(cls, params: Any) -> Filters:
        """From a multi-dict of query parameters (``source``, ``label``, ``meta``, ``level``,
        ``q``, ``since``, ``until``), as the viewer's page sends them."""

        def many(name: str) -> tuple[str, ...]:
            return tuple(v for v in params.getlist(name) if v.strip())

        def one(name: str) -> str | None:
            value = params.get(name)
            return value.strip() if value and value.strip() else None

        return cls(
            sources=many("source"),
            labels=many("label"),
            meta=many("meta"),
            level=one("level"),
            text=one("q"),
            since=one("since"),
            until=one("until"),
        )

    def sql(self) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters (``ValueError`` on a bad filter)."""
        conds = [] if self.events else ["action = 'logged'"]
        params: list[Any] = []
        if self.sources:
            conds.append(f"source IN ({', '.join('?' * len(self.sources))})")
            params.extend(self.sources)
        for label in self.labels:
            key, sep, value = label.partition("=")
            if not sep:
                conds.append("json_extract_string(labels, ?) IS NOT NULL")
                params.append(_json_path(key.strip()))
                continue
            conds.append("json_extract_string(labels, ?) = ?")
            params += [_json_path(key.strip()), value.strip()]
        for expr in self.meta:
            conds.append(_meta_condition(expr.strip(), params))
        if self.level:
            conds.append("lower(level) = lower(?)")
            params.append(self.level)
        if self.text:
            conds.append("message ILIKE ? ESCAPE '\\'")
            params.append(_like(self.text))
        if self.since is not None:
            conds.append("ts >= CAST(? AS TIMESTAMPTZ)")
            params.append(parse_time(self.since, name="since"))
        if self.until is not None:
            conds.append("ts < CAST(? AS TIMESTAMPTZ)")
            params.append(parse_time(self.until, name="until"))
        if self.where is not None and self.where.strip():
            conds.append(f"({self.where})")
        return " AND ".join(conds) or "true", params


def _meta_condition(expr: str, params: list[Any]) -> str:
    m = _META.match(expr)
    if not m:
        params.append(_json_path(expr))
        return "json_extract_string(meta, ?) IS NOT NULL"
    path, op, value = _json_path(m["key"].strip()), m["op"], m["value"].strip()
    field = "json_extract_string(meta, ?)"
    num = _number(value)
    if op == "~":
        params += [path, _like(value)]
        return f"{field} ILIKE ? ESCAPE '\\'"
    if op in ("=", "!=") and num is None:
        params += [path, value]
        return f"{field} {'=' if op == '=' else 'IS DISTINCT FROM'} ?"
    if num is None:
        raise ValueError(f"meta filter {expr!r}: {op} needs a number")
    params += [path, num]
    sql_op = {"=": "=", "!=": "<>"}.get(op, op)
    return f"TRY_CAST({field} AS DOUBLE) {sql_op} ?"


def filters_sql(
    *,
    source: str | None,
    since: str | None,
    until: str | None,
    include_events: bool,
    where: str | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of ``Run.records()``'s keyword filters."""
    return Filters(
        sources=() if source is None else (source,),
        since=since,
        until=until,
        where=where,
        events=include_events,
    ).sql()

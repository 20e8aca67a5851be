"""The records engine: every reader of a run's index goes through it.

It owns the ``records`` view's columns and types (``columns``), the filters and the one rule for
times without a zone (``filters``), which index files a read takes (``files``), the SQL reads,
purged records and the order of records (``engine``), and the incremental cursor over live
segments (``cursor``). ``Run.records()``, ``Run.query()``, ``imagelog ls|stats|show|query|tail|
export``, ``audit.verify`` and the viewer's index are its clients. DuckDB reads the files;
pyarrow is needed only for compaction and Arrow results.
"""

from __future__ import annotations

from .columns import COLUMNS, ORDER, lines_records_sql, records_sql, sql_str
from .cursor import Changes, SegmentCursor
from .engine import (
    check_where,
    connect,
    connect_view,
    iter_json,
    iter_records,
    purged_ids,
    select_lines,
    with_retry,
)
from .files import LocalFiles, RunFiles, list_files
from .filters import Filters, filters_sql, parse_time

__all__ = [
    "COLUMNS",
    "ORDER",
    "Changes",
    "Filters",
    "LocalFiles",
    "RunFiles",
    "SegmentCursor",
    "check_where",
    "connect",
    "connect_view",
    "filters_sql",
    "iter_json",
    "iter_records",
    "lines_records_sql",
    "list_files",
    "parse_time",
    "purged_ids",
    "records_sql",
    "select_lines",
    "sql_str",
    "with_retry",
]

"""The index: JSON Lines segments, one per writer per hour, and the reader that merges them."""

from __future__ import annotations

from ..layout import INDEX_PREFIX, segment_key, writer_of
from .reader import iter_segment_lines, parse_segment, segment_keys
from .segment import IndexWriter

__all__ = [
    "INDEX_PREFIX",
    "IndexWriter",
    "iter_segment_lines",
    "parse_segment",
    "segment_key",
    "segment_keys",
    "writer_of",
]

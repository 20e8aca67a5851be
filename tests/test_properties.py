"""Property tests (Hypothesis) for the pure parts: parsing, JSON rules, ids, the torn-tail reader."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagelog.errors import MetadataNotJSON
from imagelog.ids import uuid7, uuid7_time_ns
from imagelog.index import parse_segment
from imagelog.inputs import jsonable
from imagelog.record import dumps, iso_utc
from imagelog.settings import parse_bytes, parse_duration

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(json_values)
def test_jsonable_round_trips_plain_json(value: Any) -> None:
    """Anything JSON can hold passes unchanged and survives dumps/loads."""
    assert jsonable(value) == value
    assert json.loads(dumps({"meta": jsonable(value)}))["meta"] == value


@given(st.sampled_from([math.nan, math.inf, -math.inf]), st.text(min_size=1, max_size=8))
def test_non_finite_floats_are_rejected_by_name(bad: float, key: str) -> None:
    """NaN and infinities cannot be JSON; the error names the key."""
    with pytest.raises(MetadataNotJSON, match="meta"):
        jsonable({key: bad})


@given(
    st.integers(min_value=0, max_value=10**15),
    st.sampled_from(["", "B", "KB", "MB", "GB", "KiB", "MiB", "GiB"]),
)
def test_parse_bytes_units(n: int, unit: str) -> None:
    """'<n> <unit>' parses to n times the unit, with or without a space."""
    factor = {
        "": 1,
        "B": 1,
        "KB": 10**3,
        "MB": 10**6,
        "GB": 10**9,
        "KiB": 2**10,
        "MiB": 2**20,
        "GiB": 2**30,
    }
    assert parse_bytes(f"{n} {unit}") == n * factor[unit]
    assert parse_bytes(f"{n}{unit}") == n * factor[unit]


@given(st.lists(st.tuples(st.integers(1, 500), st.sampled_from("smhdw")), min_size=1, max_size=4))
def test_parse_duration_sums_parts(parts: list[tuple[int, str]]) -> None:
    """'1h30m'-style strings add up their parts."""
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == sum(n * unit[u] for n, u in parts)


@given(st.lists(st.integers(0, 2**50), min_size=2, max_size=50))
def test_uuid7_sorts_in_call_order_and_keeps_the_time(times_ms: list[int]) -> None:
    """Ids made one after another sort in call order; each carries its millisecond."""
    ids = [uuid7() for _ in times_ms]
    assert ids == sorted(ids)
    stamped = uuid7(1_800_000_000_123_000_000)
    assert uuid7_time_ns(stamped) >= 1_800_000_000_123_000_000


@settings(max_examples=200)
@given(st.lists(json_values, min_size=1, max_size=20), st.data())
def test_reader_survives_any_truncation(values: list[Any], data: st.DataObject) -> None:
    """A segment cut at any byte yields exactly the whole lines before the cut, never an error."""
    lines = [dumps({"n": i, "v": v}) + "\n" for i, v in enumerate(values)]
    blob = "".join(lines).encode("utf-8")
    cut = data.draw(st.integers(0, len(blob)))
    recs = parse_segment(blob[:cut], warn=False)
    whole = 0
    end = 0
    for line in lines:
        end += len(line.encode("utf-8"))
        if end - 1 <= cut:  # whole, or cut just before its newline (still a whole JSON object)
            whole += 1
    assert [r["n"] for r in recs] == list(range(whole))


def test_iso_utc_formats_microseconds() -> None:
    """Timestamps are ISO 8601 UTC with six fractional digits and a Z."""
    assert iso_utc(0) == "1970-01-01T00:00:00.000000Z"
    assert iso_utc(1_700_000_000_999_999_999) == "2023-11-14T22:13:20.999999Z"

"""``select=`` budgets on s3://: claims are conditional PUTs in the bucket, shared by every writer."""

from __future__ import annotations

from typing import Any

import pytest
from tests.test_select import assert_budget_held, run_writers

import imagelog
from imagelog.stores.s3 import S3Store

pytestmark = pytest.mark.s3


def test_budget_holds_across_three_processes_on_s3(s3_url: str, opts: dict[str, Any]) -> None:
    stats = run_writers(s3_url, opts, "budget(20/hour)", 30)
    recs = list(imagelog.read(s3_url, storage_options=opts).records(include_events=True))
    assert_budget_held(recs, stats, 20, 30)


def test_put_if_absent_is_a_conditional_put(s3_url: str, opts: dict[str, Any]) -> None:
    store = S3Store.from_url(s3_url, storage_options={**opts, "spool": False})
    try:
        assert store.put_if_absent("select/x/hour/w/0000000", b"first")
        assert not store.put_if_absent("select/x/hour/w/0000000", b"second")
        assert store.get("select/x/hour/w/0000000") == b"first"
    finally:
        store.close()

"""imagelog.ray on an s3:// run (SeaweedFS): the local reader's records and pixels, and no LIST
of the images prefix reaches the store (counted by a proxy in front of it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from bench.s3proxy import CountingProxy
from bench.seaweed import SeaweedFS
from tests.test_ray import _ray_cluster, check_same_as_local, write_fleet_run

import imagelog

pytestmark = [
    pytest.mark.s3,
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning"),
]
__all__ = ["_ray_cluster"]


@pytest.fixture(name="proxy")
def _proxy(seaweed: SeaweedFS) -> Iterator[CountingProxy]:
    with CountingProxy(seaweed.endpoint) as proxy:
        yield proxy


def test_ray_reads_an_s3_run_without_listing_images(
    ray_cluster: Any, s3_url: str, opts: dict[str, Any], proxy: CountingProxy
) -> None:
    import imagelog.ray

    write_fleet_run(s3_url, opts)
    run = imagelog.read(s3_url, storage_options=opts)
    via = {**opts, "endpoint": proxy.endpoint}
    proxy.clear()
    ds = imagelog.ray.read_run(s3_url, storage_options=via)
    rows = check_same_as_local(run, ds)
    assert len(rows) == 29
    for dtype in ("uint8", "uint16", "float32"):
        images = (
            imagelog.ray.read_run(s3_url, where=f"dtype = '{dtype}'", storage_options=via)
            .map_batches(
                imagelog.ray.load_images,
                batch_format="numpy",
                batch_size=4,
                fn_kwargs={"storage_options": via},
            )
            .take_all()
        )
        assert images
        for row in images:
            assert np.array_equal(np.asarray(row["image"]), run.load(json.loads(row["record"])))
    bucket_prefix = s3_url.removeprefix("s3://")
    assert proxy.lists(bucket_prefix + "/images") == []
    assert proxy.lists(bucket_prefix + "/index")  # the index is what was listed
    assert proxy.gets(bucket_prefix + "/images/") >= 29  # every image fetched by key


def test_duckdb_reads_the_compacted_s3_run_through_pyarrow(
    s3_url: str, opts: dict[str, Any], seaweed: SeaweedFS
) -> None:
    """docs/fleet.md's DuckDB-on-S3 recipe: pyarrow's S3 filesystem (no DuckDB extension to
    download), the hive layout, counts equal to the records view's."""
    import duckdb
    import pyarrow.dataset as pads
    from pyarrow import fs

    from imagelog.compact import compact

    write_fleet_run(s3_url, opts)
    run = imagelog.read(s3_url, storage_options=opts)
    compact(run.store, now_ns=2**62)
    s3 = fs.S3FileSystem(
        access_key=seaweed.access_key,
        secret_key=seaweed.secret_key,
        endpoint_override=seaweed.endpoint,
        region="us-east-1",
    )
    index = pads.dataset(
        s3_url.removeprefix("s3://") + "/index",
        filesystem=s3,
        format="parquet",
        partitioning="hive",
    )
    con = duckdb.connect()
    con.register("manifest", index)
    got = dict(
        con.execute(
            "select source, count(*) from manifest where action = 'logged' group by 1"
        ).fetchall()
    )
    want = dict(
        run.query(
            "select source, count(*) from records where action = 'logged' group by 1"
        ).fetchall()
    )
    assert got == {s: n + (s == "cam0") for s, n in want.items()}  # the view hides the purged
    current = "select source, count(*) from manifest where uri is not null group by 1"
    assert dict(con.execute(current).fetchall()) == want  # the manifest has the purge rule
    uris = [u for (u,) in con.execute("select uri from manifest where uri is not null").fetchall()]
    assert len(uris) == 29 and all(u.startswith(s3_url + "/images/") for u in uris)

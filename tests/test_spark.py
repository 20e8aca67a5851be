"""pyspark (local mode) reads the compacted tables as they are, and decodes imagelog's formats
with the UDF recipe of docs/fleet.md."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import require
from tests.test_ray import write_fleet_run

import imagelog
from imagelog.compact import compact

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(name="spark", scope="module")
def _spark() -> Iterator[Any]:
    """A local Spark session (2 threads, small memory, no UI), stopped after the module."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        SparkSession = None
    require(SparkSession is not None, "pyspark is not installed")
    require(shutil.which("java") is not None, "Spark needs a Java runtime (java is missing)")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("imagelog-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


@pytest.fixture(name="compacted", scope="module")
def _compacted(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("spark") / "run")
    write_fleet_run(path)
    compact(imagelog.read(path).store, now_ns=2**62)  # every hour, the open one too
    assert not list(Path(path, "index").glob("*.jsonl"))
    return path


def test_spark_counts_by_source_like_duckdb(spark: Any, compacted: str) -> None:
    """The hive-partitioned files read with a plain path; counts equal the records view's."""
    df = spark.read.parquet(f"{compacted}/index")
    assert {"date", "hour", "uri", "record", "source", "ts"} <= set(df.columns)
    got = {r["source"]: r["count"] for r in df.groupBy("source").count().collect()}
    run = imagelog.read(compacted)
    # the Parquet files hold every line; the view leaves out the one purged image
    want = dict(run.query("select source, count(*) from records group by 1").fetchall())
    assert got == {s: n + (s == "cam0") for s, n in want.items()}
    # docs/fleet.md's anti-join applies the view's purge rule
    from pyspark.sql import functions as F

    purged = df.where("action = 'purged'").select(
        F.explode(
            F.from_json(F.get_json_object("record", "$.imagelog.purge.ids"), "array<string>")
        ).alias("id")
    )
    logged = df.where("action = 'logged'").join(purged, "id", "left_anti")
    view = dict(
        run.query(
            "select source, count(*) from records where action = 'logged' group by 1"
        ).fetchall()
    )
    assert {r["source"]: r["count"] for r in logged.groupBy("source").count().collect()} == view
    # the manifest applies it already: a purged frame has no uri
    current = df.where("action = 'logged' and uri is not null")
    assert {r["source"]: r["count"] for r in current.groupBy("source").count().collect()} == view
    hours = {(str(r["date"]), int(r["hour"])) for r in df.select("date", "hour").collect()}
    assert hours == {("2024-01-01", 0), ("2024-01-01", 1), ("2024-01-01", 2)}


def test_spark_udf_decodes_imagelog_formats(spark: Any, compacted: str) -> None:
    """The recipe's UDF: JPEG XL, 16-bit PNG and float .npy decoded in Spark's workers."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    pixels = T.StructType(
        [
            T.StructField("shape", T.ArrayType(T.IntegerType())),
            T.StructField("dtype", T.StringType()),
            T.StructField("data", T.BinaryType()),
        ]
    )

    def load(uri, record):  # type: ignore[no-untyped-def]  # Spark reads type hints as pandas UDFs
        from imagelog.fleet import load_pixels

        arr = load_pixels(uri, record)
        return list(arr.shape), str(arr.dtype), arr.tobytes()

    decode = F.udf(load, returnType=pixels)

    df = spark.read.parquet(f"{compacted}/index").where("uri is not null")
    record = F.coalesce("uri_record", "record")  # the recipe: the record of the file at uri
    rows = df.select(record.alias("record"), decode("uri", record).alias("px")).collect()
    run = imagelog.read(compacted)
    seen = set()
    for row in rows:
        rec = json.loads(row["record"])
        px = row["px"]
        got = np.frombuffer(px["data"], dtype=px["dtype"]).reshape(px["shape"])
        assert np.array_equal(got, run.load(rec))
        seen.add((rec["image"]["format"], px["dtype"]))
    assert len(rows) == len(list(run.records())) == 29  # the purged frame left out
    assert {("jxl", "uint8"), ("png", "uint16"), ("npy", "float32")} <= seen

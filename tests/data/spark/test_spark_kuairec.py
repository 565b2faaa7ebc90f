"""The Spark KuaiRec ingest writes what the pandas ingest writes: the same tables (values,
dtypes, column order, row order, row groups), the same encoders and the same manifest (its
float label mean and std, sums taken in another order, to 1e-12). Tiny generated data (10k
rows: 8k big-matrix, 2k small-matrix rows) keeps each Spark ingest to a minute on 2 cores."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.features import SPLITS, read_manifest

pytestmark = pytest.mark.slow


def _row_groups(path: Path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def _assert_same_dataset(pandas_dir: Path, spark_dir: Path) -> None:
    for split in SPLITS:
        expected = pd.read_parquet(pandas_dir / f"{split}.parquet")
        got = pd.read_parquet(spark_dir / f"{split}.parquet")
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert _row_groups(spark_dir / f"{split}.parquet") == _row_groups(pandas_dir / f"{split}.parquet")
    assert (json.loads((spark_dir / "encoders.json").read_text())
            == json.loads((pandas_dir / "encoders.json").read_text()))
    want, got = read_manifest(pandas_dir), read_manifest(spark_dir)
    assert got.pop("engine")["name"] == "spark"
    want_stats, got_stats = want["label"].pop("train_stats"), got["label"].pop("train_stats")
    for key in ("mean", "std"):
        assert got_stats.pop(key) == pytest.approx(want_stats.pop(key), rel=1e-12)
    assert got_stats == want_stats
    assert got == want


def test_hash_codes_per_partition_equal_numpys(spark) -> None:
    """The Spark hash split is splits.hash_split on each partition's row numbers: every row
    gets the code numpy gives it in one array, whatever the partitioning (cheap: no ingest)."""
    import numpy as np
    from pyspark.sql import functions as F

    from grmodel.data import splits
    from grmodel.data.spark.frames import hash_codes

    n = 30_000
    rows = spark.range(0, n, numPartitions=5).withColumnRenamed("id", "_row")
    got = (hash_codes(rows.repartition(3), "_row", "_code", 0.1, 0.2, seed=11)
           .orderBy("_row").select(F.col("_code")).toPandas()["_code"].to_numpy())
    np.testing.assert_array_equal(got, splits.hash_split(np.arange(n), 0.1, 0.2, seed=11))


@pytest.mark.parametrize("options", [
    # The GR authors' protocol: big matrix -> train + seeded random valid, small -> test; the
    # raw folder named by a file:// URI, which takes the object-storage path (driver reads
    # through pyarrow's filesystem, Spark reads the URI; the long cases read a local path).
    {"raw_as_uri": True},
    pytest.param({"split": "chronological", "label_mode": "norm_ratio", "dedupe": True,
                  "row_group_rows": 256}, marks=pytest.mark.long),  # make test's 8 min: pytest -m long
    # The seeded hash split (no driver-side array): the same rows in each split as pandas.
    pytest.param({"split_draw": "hash"}, marks=pytest.mark.long),
    pytest.param({"split": "random", "split_draw": "hash", "dedupe": True},
                 marks=pytest.mark.long),
], ids=["authors-uri", "chronological-norm-dedupe-small-groups", "authors-hash",
        "random-hash-dedupe"])
def test_spark_ingest_equals_the_pandas_ingest(spark, tiny_raw: Path, tmp_path: Path,
                                               options: dict) -> None:
    from grmodel.data.spark.kuairec import ingest_kuairec_spark

    options = dict(options)
    raw = tiny_raw.as_uri() if options.pop("raw_as_uri", False) else tiny_raw
    config = IngestConfig.from_dict(options)
    ingest_kuairec(tiny_raw, tmp_path / "pandas", config)
    manifest = ingest_kuairec_spark(raw, tmp_path / "spark", config, spark)
    assert manifest["engine"]["layout"] == "file"
    if options.get("split_draw") == "hash":
        assert manifest["engine"]["split_draw"].startswith("splits.hash_split")
    _assert_same_dataset(tmp_path / "pandas", tmp_path / "spark")
    if options.get("row_group_rows") == 256:  # several part files were joined into one file
        groups = _row_groups(tmp_path / "spark" / "train.parquet")
        assert len(groups) > 16 and set(groups[:-1]) == {256}


@pytest.mark.parametrize("options", [
    # Logs by day, through a file:// URI (the object-storage path): the window's partitions.
    pytest.param({"split": "forward", "as_of": "2020-09-10", "window_days": 2},
                 marks=pytest.mark.long),
    # The flat layout split forward by the timestamps' days (rows without one dropped).
    pytest.param({"split": "forward", "as_of": "2020-09-05", "window_days": 7, "dedupe": True},
                 marks=pytest.mark.long),
], ids=["days-forward-uri", "flat-forward-dedupe"])
def test_spark_forward_split_equals_the_pandas_one(spark, tiny_days: Path, tiny_raw: Path,
                                                  tmp_path: Path, options: dict) -> None:
    from grmodel.data.spark.kuairec import ingest_kuairec_spark

    raw = tiny_days if options["as_of"] == "2020-09-10" else tiny_raw
    config = IngestConfig.from_dict(options)
    pandas_manifest = ingest_kuairec(raw, tmp_path / "pandas", config)
    source = raw.as_uri() if raw == tiny_days else raw
    ingest_kuairec_spark(source, tmp_path / "spark", config, spark)
    _assert_same_dataset(tmp_path / "pandas", tmp_path / "spark")
    assert pandas_manifest["window"]["test_date"] == options["as_of"]

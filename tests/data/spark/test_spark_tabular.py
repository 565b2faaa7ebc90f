"""A tabular spec built with Spark equals build_tabular's dataset: a Parquet file with string,
integer and float fields (with gaps), a datetime timestamp and an oracle, split at random and
in time order; a CSV source; and a date-partitioned Parquet directory, whose partition column
the manifest records. 2,000 rows per table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from grmodel.data.tabular import build_tabular
from grmodel.features import SPLITS, read_manifest

pytestmark = pytest.mark.slow


def _table(n: int = 2_000, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east", None], n, p=[0.4, 0.3, 0.25, 0.05])
    tenure = rng.gamma(2.0, 6.0, n).round(1)
    tenure[rng.random(n) < 0.03] = np.nan
    spend = rng.lognormal(2, 1, n) * (rng.random(n) > 0.2)
    return pd.DataFrame({
        "account": rng.integers(0, 400, n),
        "region": region,
        "plan": rng.choice(["free", "pro", "team"], n),
        "tenure": tenure,
        "device": rng.choice([f"d{i}" for i in range(7)], n),
        "seen_at": pd.Timestamp("2025-03-01") + pd.to_timedelta(rng.integers(0, 10**6, n), "s"),
        "best_guess": spend * 0.9,
        "spend": spend,
        "day": rng.choice(["2025-03-01", "2025-03-02", "2025-03-03"], n),
    })


def _spec(tmp_path: Path, source: str, **changes) -> Path:
    spec = {"name": "spend", "source": source, "label": "spend",
            "user": {"categorical": ["account", "region", "plan"], "numeric": {"tenure": 6}},
            "item": {"categorical": ["device"]}, "timestamp": "seen_at", "oracle": "best_guess",
            "split": {"kind": "random", "valid_fraction": 0.1, "test_fraction": 0.2, "seed": 9}}
    spec.update(changes)
    path = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _assert_equal(pandas_dir: Path, spark_dir: Path) -> dict:
    for split in SPLITS:
        pd.testing.assert_frame_equal(pd.read_parquet(spark_dir / f"{split}.parquet"),
                                      pd.read_parquet(pandas_dir / f"{split}.parquet"),
                                      check_exact=True)
    assert (json.loads((spark_dir / "encoders.json").read_text())
            == json.loads((pandas_dir / "encoders.json").read_text()))
    want, got = read_manifest(pandas_dir), read_manifest(spark_dir)
    engine = got.pop("engine")
    want_stats, got_stats = want["label"].pop("train_stats"), got["label"].pop("train_stats")
    for key in ("mean", "std"):
        assert got_stats.pop(key) == pytest.approx(want_stats.pop(key), rel=1e-12)
    assert got_stats == want_stats and got == want
    return engine


@pytest.mark.parametrize("kind", ["random", pytest.param("chronological", marks=pytest.mark.long),
                                  pytest.param("random-hash", marks=pytest.mark.long)])
def test_spark_tabular_equals_build_tabular_on_parquet(spark, tmp_path: Path, kind: str) -> None:
    from grmodel.data.spark.tabular import build_tabular_spark

    _table().to_parquet(tmp_path / "t.parquet")
    kind, _, draw = kind.partition("-")
    spec = _spec(tmp_path, "t.parquet", split={"kind": kind, "valid_fraction": 0.1,
                                               "test_fraction": 0.2, "seed": 9,
                                               "draw": draw or "permutation"})
    build_tabular(spec, tmp_path / "pandas")
    build_tabular_spark(spec, tmp_path / "spark", spark)
    engine = _assert_equal(tmp_path / "pandas", tmp_path / "spark")
    assert engine["statistics"]["tenure"].startswith("exact")
    if draw:
        assert engine["split_draw"].startswith("splits.hash_split")


@pytest.mark.long  # CI's 15 minutes keep one Spark tabular test in the default run
def test_spark_tabular_reads_csv_and_a_partitioned_directory(spark, tmp_path: Path) -> None:
    from grmodel.data.spark.tabular import build_tabular_spark

    table = _table().drop(columns=["seen_at"])
    table.to_csv(tmp_path / "t.csv", index=False)
    spec = _spec(tmp_path, "t.csv", timestamp=None)
    build_tabular(spec, tmp_path / "pandas")
    build_tabular_spark(spec, tmp_path / "spark", spark)
    _assert_equal(tmp_path / "pandas", tmp_path / "spark")

    # Partitioned by day: one folder per day. The rows are those of the three files in path
    # order, which is also how the pandas path reads their concatenation.
    days = tmp_path / "by_day"
    for day, part in table.groupby("day", sort=True):
        (days / f"day={day}").mkdir(parents=True)
        part.drop(columns=["day"]).to_parquet(days / f"day={day}" / "part-0.parquet")
    joined = pd.concat([pd.read_parquet(p) for p in sorted(days.rglob("*.parquet"))],
                       ignore_index=True)
    joined.to_parquet(tmp_path / "joined.parquet")
    build_tabular(_spec(tmp_path, "joined.parquet", timestamp=None), tmp_path / "pandas-days")
    manifest = build_tabular_spark(_spec(tmp_path, "by_day", timestamp=None),
                                   tmp_path / "spark-days", spark)
    assert manifest["engine"]["partition_columns"] == ["day"]
    for split in SPLITS:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "spark-days" / f"{split}.parquet"),
                                      pd.read_parquet(tmp_path / "pandas-days" / f"{split}.parquet"),
                                      check_exact=True)


def test_spark_tabular_reads_a_uri_source_as_its_local_path(spark, tmp_path: Path) -> None:
    """A source named by URI (here file://; s3a:// in a cluster: tests/data/test_storage.py
    reads S3 on loopback) goes through the URI code path, listing, Parquet footers and Spark's
    own file names, and gives the rows the local files give, in the same order."""
    from grmodel.data.spark.tabular import build_tabular_spark

    table = _table()
    parts = tmp_path / "parts"
    parts.mkdir()
    for k, chunk in enumerate((table.iloc[:1200], table.iloc[1200:])):  # rows in file order
        chunk.reset_index(drop=True).to_parquet(parts / f"part-{k}.parquet")
    table.to_parquet(tmp_path / "joined.parquet")
    build_tabular(_spec(tmp_path, "joined.parquet"), tmp_path / "pandas")
    manifest = build_tabular_spark(_spec(tmp_path, parts.as_uri()), tmp_path / "spark", spark)
    assert manifest["source"]["path"] == parts.as_uri() and manifest["source"]["sha256"] is None
    for split in SPLITS:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "spark" / f"{split}.parquet"),
                                      pd.read_parquet(tmp_path / "pandas" / f"{split}.parquet"),
                                      check_exact=True)
    assert (json.loads((tmp_path / "spark" / "encoders.json").read_text())
            == json.loads((tmp_path / "pandas" / "encoders.json").read_text()))


@pytest.mark.long  # CI's 15 minutes keep one Spark tabular test in the default run
def test_spark_forward_split_over_day_partitions_equals_build_tabular(spark, tmp_path: Path
                                                                     ) -> None:
    """A forward split over date=YYYY-MM-DD partitions: the window's partitions only, the same
    tables, encoders and manifest (window and partition hashes included) as the pandas path."""
    from grmodel.data.spark.tabular import build_tabular_spark

    table = _table().drop(columns=["day"])
    table["day"] = table["seen_at"].dt.strftime("%Y-%m-%d")
    root = tmp_path / "by_day"
    for day, part in table.groupby("day", sort=True):
        (root / f"date={day}").mkdir(parents=True)
        part.drop(columns=["day"]).to_parquet(root / f"date={day}" / "part-0.parquet")
    spec = _spec(tmp_path, "by_day", split={"kind": "forward", "as_of": "2025-03-11",
                                            "window_days": 4})
    manifest = build_tabular(spec, tmp_path / "pandas")
    build_tabular_spark(spec, tmp_path / "spark", spark)
    _assert_equal(tmp_path / "pandas", tmp_path / "spark")
    assert manifest["window"]["valid_dates"] == ["2025-03-10", "2025-03-10"]
    assert len(manifest["source"]["partitions"]) == 5

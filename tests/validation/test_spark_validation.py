"""Validation at scale: exact Spark counts of the hard rules over every row, the GX suites on a
seeded sample. On the tiny dataset (about 10k rows) the sampled suites pass as the
full ones do; a damaged id that the sample misses is still caught by the exact counts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from grmodel.features import FeatureSchema, read_manifest
from grmodel.validation import validate_processed

pytestmark = pytest.mark.slow


def test_sampled_suites_and_exact_counts_agree_with_the_full_validation(spark, tiny_processed: Path,
                                                                        tmp_path: Path) -> None:
    from grmodel.validation.spark import passed, validate_processed_spark

    full = validate_processed(tiny_processed)
    report, exact = validate_processed_spark(spark, tiny_processed, sample_rows=500, seed=3)
    assert full.counts()["failed"] == 0 and passed(report, exact)
    rows = read_manifest(tiny_processed)["splits"]["rows"]["train"]
    assert exact["train"]["rows"] == rows and exact["train"]["sample_rows"] < rows
    assert exact["train"]["rules"] > 20 and not exact["train"]["failures"]

    damaged = Path(shutil.copytree(tiny_processed, tmp_path / "damaged"))
    train = pd.read_parquet(damaged / "train.parquet")
    train.loc[4321, "item_id"] = 10**6  # one id far outside the vocabulary
    train.to_parquet(damaged / "train.parquet", index=False)
    report, exact = validate_processed_spark(spark, damaged, sample_rows=100, seed=3)
    assert exact["train"]["failures"] == {
        f"item_id: id null or outside [0, {_cardinality(damaged, 'item_id')})": 1}
    assert not passed(report, exact)


def _cardinality(processed: Path, name: str) -> int:
    schema = FeatureSchema.from_dict(read_manifest(processed)["features"])
    return next(f.cardinality for f in schema.fields if f.name == name)

"""Validation of a processed dataset too large for one process: exact distributed counts of
the hard rules on every row, and the great-expectations suites on a seeded sample.

Why not GX's Spark datasource: the suites here carry custom derived checks (pair overlaps
between splits, expected row counts, mask consistency) written against pandas frames
(grmodel/validation/processed.py); running them on Spark would need a second implementation of
each. Instead the rules a wrong dataset cannot survive (ids within the model's vocabulary,
never null, masks equal to ``id != 0``, labels finite and non-negative, row counts equal to
the manifest's) are counted exactly by Spark over every row, and the full suites run on a
seeded sample of at most ``sample_rows`` rows per split, through the same code as a local run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from grmodel.atomic import through_json
from grmodel.data.streaming import split_paths
from grmodel.features import LABEL_COLUMN, MISSING_ID, SPLITS, FeatureSchema, read_manifest
from grmodel.validation.processed import validate_processed
from grmodel.validation.report import ValidationReport

SAMPLE_ROWS = 200_000


def hard_rule_counts(spark: SparkSession, processed_dir: str | Path) -> dict[str, Any]:
    """Per split, over every row: rows, and how many rows break each hard rule (0 is a pass).
    One aggregation per split."""
    manifest = read_manifest(processed_dir)
    schema = FeatureSchema.from_dict(manifest["features"])
    expected = manifest["splits"]["rows"]
    out: dict[str, Any] = {}
    for split in SPLITS:
        frame = spark.read.parquet(*[str(p) for p in split_paths(processed_dir, split)])
        checks = {}
        for spec in schema.fields:
            ids = F.col(spec.name)
            checks[f"{spec.name}: id null or outside [0, {spec.cardinality})"] = (
                ids.isNull() | (ids < 0) | (ids >= spec.cardinality))
            if spec.mask_column:
                checks[f"{spec.mask_column}: not (id != 0)"] = (
                    F.col(spec.mask_column) != (ids != MISSING_ID).cast("int"))
        label = F.col(LABEL_COLUMN)
        checks[f"{LABEL_COLUMN}: missing, negative or not finite"] = (
            label.isNull() | F.isnan(label) | (F.abs(label) == float("inf")) | (label < 0))
        names = list(checks)
        found = frame.agg(F.count("*").alias("rows"), *[
            F.sum(bad.cast("long")).alias(f"c{k}") for k, bad in enumerate(checks.values())]).first()
        failures = {name: int(found[f"c{k}"] or 0) for k, name in enumerate(names)}
        out[split] = {"rows": int(found["rows"]), "expected_rows": expected.get(split),
                      "failures": {k: v for k, v in failures.items() if v},
                      "rules": len(names)}
    return out


def validate_processed_spark(spark: SparkSession, processed_dir: str | Path,
                             sample_rows: int = SAMPLE_ROWS, seed: int = 2024
                             ) -> tuple[ValidationReport, dict[str, Any]]:
    """(the GX report on a seeded sample, the exact hard-rule counts). The dataset passes when
    the report has no failure and every count is 0 with the manifest's row counts."""
    processed_dir = Path(processed_dir)
    exact = hard_rule_counts(spark, processed_dir)
    manifest = read_manifest(processed_dir)
    sample_dir = Path(tempfile.mkdtemp(prefix="grmodel-sample-"))
    try:
        rows = {}
        for split in SPLITS:
            frame = spark.read.parquet(*[str(p) for p in split_paths(processed_dir, split)])
            total = exact[split]["rows"]
            fraction = min(1.0, sample_rows / max(total, 1))
            sample = frame if fraction >= 1.0 else frame.sample(fraction=fraction, seed=seed)
            table = pa.Table.from_pandas(sample.toPandas(), preserve_index=False)
            pq.write_table(table, sample_dir / f"{split}.parquet")
            rows[split] = table.num_rows
        sampled = through_json(manifest)  # a deep copy
        sampled["splits"]["rows"] = rows  # the suites' row-count checks apply to the sample
        (sample_dir / "manifest.json").write_text(json.dumps(sampled))
        report = validate_processed(sample_dir)
    finally:
        shutil.rmtree(sample_dir, ignore_errors=True)
    for split in SPLITS:
        exact[split]["sample_rows"] = rows[split]
        exact[split]["sample_seed"] = seed
    return report, exact


def passed(report: ValidationReport, exact: dict[str, Any]) -> bool:
    counts_ok = all(not e["failures"] and e["rows"] == e["expected_rows"] for e in exact.values())
    return counts_ok and report.counts()["failed"] == 0

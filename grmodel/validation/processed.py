"""The processed-dataset suite (one per split, from the manifest's feature schema) and
``validate_processed``, which reads the splits and runs it."""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from grmodel.data.kuairec.schema import ColumnKind
from grmodel.features import FEW_SPLIT_ROWS, SPLITS, FeatureSchema, read_manifest
from grmodel.validation.checks import (
    Check,
    DerivedColumn,
    TableSuite,
    between,
    columns_present,
    first_offending_field,
    float_column,
    in_set,
    no_offending_field,
    non_negative_finite,
    not_null,
    row_count,
)
from grmodel.validation.gx import make_report, run_suite
from grmodel.validation.report import ValidationReport
from grmodel.validation.tables import LoadedTable, read_parquet_table

OverlapRule = Literal["auto", "none", "pairs", "time"]
RAW_ID_COLUMNS = ("user_id_raw", "item_id_raw")


@dataclass(frozen=True)
class ProcessedBounds:
    """Bounds of the processed-dataset suites."""

    min_train_rows: int = 100
    min_eval_rows: int = 1  # valid and test
    # Warnings, not failures: a split with fewer rows gives noisy metrics; a constant label
    # teaches nothing (a model of it collapses to that constant).
    few_rows: int = FEW_SPLIT_ROWS
    # Label tail: no label above label_tail_factor x its label_tail_quantile quantile in its
    # split. Real KuaiRec (docs/kuairec.md): max watch_ratio 573.5 = 120 x its p99 4.79; the
    # generator's full preset: max watch time 16,823 s = 67 x its 0.999 quantile 249 s. A
    # thousandfold outlier is a unit error or a corrupt row (1e12 ms plays put the train label
    # mean at 416,678 s). Not applied where the quantile is 0.
    label_tail_quantile: float = 0.999
    label_tail_factor: float = 1_000.0
    # What train and test may not share: "pairs" (no (user, item) pair in both), "time" (test
    # starts after train ends), "none", or "auto" (from the manifest's split description).
    forbid_overlap: OverlapRule = "auto"

    def __post_init__(self) -> None:
        allowed = ("auto", "none", "pairs", "time")
        if self.forbid_overlap not in allowed:
            raise ValueError(f"forbid_overlap={self.forbid_overlap!r}: expected one of {allowed}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def label_tail_ratio(frame: pd.DataFrame, quantile: float) -> np.ndarray:
    """Each label over its split's ``quantile`` quantile; NaN where the label is negative or
    not finite (the label checks report those) or the quantile is 0."""
    label = float_column(frame, "label")
    finite = np.isfinite(label) & (label >= 0)
    level = float(np.quantile(label[finite], quantile)) if finite.any() else 0.0
    if level <= 0:
        return np.full(len(label), np.nan)
    return np.where(finite, label / level, np.nan)


def pair_keys(frame: pd.DataFrame) -> np.ndarray:
    """One int64 key per (user_id_raw, item_id_raw) pair."""
    user = frame["user_id_raw"].to_numpy(dtype=np.int64)
    item = frame["item_id_raw"].to_numpy(dtype=np.int64)
    return (user << 32) ^ (item & 0xFFFFFFFF)


def processed_split_suite(
    split: str,
    schema: FeatureSchema,
    expected_rows: int | None,
    bounds: ProcessedBounds,
    overlap: Literal["none", "pairs", "time"] = "none",
    train_pairs: np.ndarray | None = None,
    train_max_timestamp: float | None = None,
) -> TableSuite:
    """One split of a processed dataset (grmodel/features.py contract).

    Column dtypes are checked while reading (a Parquet column has one dtype); the rules over
    all feature fields are one derived column each (see :func:`first_offending_field`).
    """
    names = [spec.name for spec in schema.fields]
    masked = [spec for spec in schema.fields if spec.mask_column]
    masks = [spec.mask_column for spec in masked]
    columns: dict[str, ColumnKind] = {name: "int" for name in (*names, *masks)}
    columns.update({"label": "float", "duration_s": "float", "timestamp": "float",
                    "user_id_raw": "int", "item_id_raw": "int"})
    minimum = bounds.min_train_rows if split == "train" else bounds.min_eval_rows
    checks: list[Check] = [row_count((minimum, 10**12)), columns_present(list(columns))]
    if expected_rows is not None:
        checks.append(Check("expect_table_row_count_to_equal", {"value": expected_rows},
                            f"rows = {expected_rows:,} as manifest.json records"))
    checks += [
        no_offending_field("id_outside_encoder",
                           "every id is within its field's encoder size [0, cardinality)"),
        not_null("label"),
        non_negative_finite("label"),
        not_null("duration_s"),
        between(
            "label_tail_ratio", 0, bounds.label_tail_factor,
            f"label <= {bounds.label_tail_factor:g} x the split's"
            f" {bounds.label_tail_quantile:g} quantile (real KuaiRec: max 120 x p99)",
            ("label",),
        ),
        Check("expect_table_row_count_to_be_between", {"min_value": bounds.few_rows},
              f"at least {bounds.few_rows:,} rows (fewer give noisy metrics)", "warning",
              tag="few_rows"),
        Check("expect_column_unique_value_count_to_be_between",
              {"column": "label", "min_value": 2},
              "the label is not constant (a model of it collapses to that constant)", "warning"),
    ]
    sizes = np.asarray([spec.cardinality for spec in schema.fields])
    derived = [
        DerivedColumn("id_outside_encoder", tuple(names), lambda f: first_offending_field(
            f, names, lambda col, k: (col < 0) | (col >= sizes[k]))),
        DerivedColumn("label_tail_ratio", ("label",), functools.partial(
            label_tail_ratio, quantile=bounds.label_tail_quantile)),
    ]
    if masked:
        checks += [
            no_offending_field("mask_not_0_or_1", "every <field>_mask is 0 or 1"),
            no_offending_field("mask_disagrees_with_id", "every <field>_mask = (<field> != 0)"),
        ]
        derived += [
            DerivedColumn("mask_not_0_or_1", tuple(masks), lambda f: first_offending_field(
                f, masks, lambda col, k: (col != 0) & (col != 1))),
            DerivedColumn("mask_disagrees_with_id", (*(s.name for s in masked), *masks),
                          lambda f: first_offending_field(f, masks, lambda col, k: (
                              (col != 0) != (f[masked[k].name] != 0)))),
        ]
    if split != "train" and overlap == "pairs" and train_pairs is not None:
        derived.append(DerivedColumn(
            "pair_in_train", RAW_ID_COLUMNS,
            lambda f: np.isin(pair_keys(f), train_pairs).astype(np.uint8),
        ))
        checks.append(in_set("pair_in_train", (0,), "no (user, item) pair is also in train",
                             RAW_ID_COLUMNS))
    if split != "train" and overlap == "time" and train_max_timestamp is not None:
        checks.append(Check(
            "expect_column_min_to_be_between",
            {"column": "timestamp", "min_value": train_max_timestamp},
            f"{split} starts after train ends (timestamp >= {train_max_timestamp:.3f})",
        ))
    return TableSuite(f"{split}.parquet", columns, tuple(checks), tuple(derived))



# What each ingest split kind forbids train and test to share. The authors' protocol (big
# matrix -> train, small matrix -> test) and a random split may repeat (user, video) pairs.
SPLIT_OVERLAP_RULES = {"chronological": "time", "authors": "none", "random": "none"}


def _split_description(manifest: dict[str, Any]) -> dict[str, Any]:
    splits = manifest.get("splits")
    return splits if isinstance(splits, dict) else {}


def _overlap_rule(manifest: dict[str, Any], bounds: ProcessedBounds) -> str:
    """What train and test may not share; "auto" follows the manifest's split kind."""
    if bounds.forbid_overlap != "auto":
        return bounds.forbid_overlap
    return SPLIT_OVERLAP_RULES.get(_split_description(manifest).get("kind"), "none")


def _expected_rows(manifest: dict[str, Any], split: str) -> int | None:
    """Rows the manifest records for a split: ``splits.rows.<split>`` or ``splits.<split>``."""
    splits = _split_description(manifest)
    rows = splits.get("rows") if isinstance(splits.get("rows"), dict) else splits
    entry = rows.get(split)
    return entry if isinstance(entry, int) else None


def validate_processed(
    processed_dir: str | Path, bounds: ProcessedBounds | None = None
) -> ValidationReport:
    """Validate every split of a processed dataset against its manifest's feature schema."""
    started = time.perf_counter()
    processed_dir, bounds = Path(processed_dir), bounds or ProcessedBounds()
    manifest = read_manifest(processed_dir)
    schema = FeatureSchema.from_dict(manifest["features"])
    overlap = _overlap_rule(manifest, bounds)
    tables, results = [], []
    train_pairs, train_max_time = None, None
    for split in SPLITS:
        suite = processed_split_suite(split, schema, _expected_rows(manifest, split), bounds,
                                      overlap, train_pairs, train_max_time)
        table = read_parquet_table(processed_dir / suite.name, suite.columns)
        results += run_suite(table, suite)
        if split == "train":
            train_pairs, train_max_time = _train_keys(table)
        tables.append(table.info())
    params = {**bounds.to_dict(), "overlap_rule": overlap, "schema": schema.to_dict()}
    return make_report("processed", str(processed_dir), params, tables, results, started)


def _train_keys(table: LoadedTable) -> tuple[np.ndarray | None, float | None]:
    """Train's (user, item) pair keys and last timestamp, for the overlap checks."""
    frame = table.frame
    pairs = None
    if not any(table.why_unusable(c) for c in ("user_id_raw", "item_id_raw")):
        pairs = np.unique(pair_keys(frame))
    last = None
    if not table.why_unusable("timestamp") and frame["timestamp"].notna().any():
        last = float(frame["timestamp"].max())
    return pairs, last


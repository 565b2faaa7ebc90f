"""Score trained models on the test split, beside the training median and the oracle floor.

Every model reads the test rows through its own encoders: where its encoders are the
dataset's, the dataset's ids; where they differ (a champion trained on another day, whose
encoders were fitted on other rows), the test split's raw values encoded by the model
(values it never saw get its out-of-vocabulary id). Ids alone would be positions in another
vocabulary: a crash when it grew, silently wrong rows when it kept its size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from grmodel import metrics
from grmodel.checkpoint import load_checkpoint
from grmodel.config import EvalConfig
from grmodel.features import (
    RAW_PREFIX,
    DatasetError,
    check_encoders,
    label_array,
    read_encoders,
    read_raw_values,
    read_split,
)
from grmodel.models import WatchTimeModel
from grmodel.predict import predict_frame

log = logging.getLogger(__name__)

TRAIN_MEDIAN = "train median"
ORACLE = "oracle (median)"
# How a model read the test rows (what :class:`Scores` records per model).
DATASET_IDS = "dataset ids"  # its encoders are the dataset's: the ids mean the same values
OWN_ENCODERS = "own encoders"  # the raw values, encoded by the model's own encoders
UNCHECKED_IDS = "dataset ids, unchecked"  # a model without encoders on a dataset with them


@dataclass
class Scores:
    """Predictions of every model on the same test rows, and how each model read them."""

    labels: np.ndarray
    predictions: dict[str, np.ndarray]
    scored_on: dict[str, str]
    test: pd.DataFrame  # the test split's columns but its raw values


def score_test(
    processed_dir: str | Path,
    model_dirs: dict[str, str | Path],
    batch_size: int = 4096,
    label_column: str = "label",
    max_rows: int | None = None,
) -> Scores:
    """Predict the test split with every model, each through its own encoders."""
    test = test_split(processed_dir, max_rows)
    y = label_array(test, label_column, str(Path(processed_dir) / "test.parquet"))
    dataset_encoders = read_encoders(processed_dir)
    predictions, scored_on = {}, {}
    for name, model_dir in model_dirs.items():
        model, _ = load_checkpoint(model_dir)
        frame, encoders, how = model_inputs(model, model_dir, processed_dir, test,
                                            dataset_encoders, max_rows)
        predictions[name] = predict_frame(model, frame, batch_size=batch_size, encoders=encoders,
                                          source=f"{processed_dir} (test rows for {name})")
        scored_on[name] = how
    return Scores(y, predictions, scored_on, test)


def test_split(processed_dir: str | Path, max_rows: int | None = None) -> pd.DataFrame:
    """The test split without its raw-value columns (read only when a model needs them)."""
    path = Path(processed_dir) / "test.parquet"
    if not path.is_file():
        return read_split(processed_dir, "test", max_rows)  # raises the clear error
    names = [n for n in pq.read_schema(path).names if not n.startswith(RAW_PREFIX)]
    return read_split(processed_dir, "test", max_rows, columns=names)


def model_inputs(
    model: WatchTimeModel,
    model_dir: str | Path,
    processed_dir: str | Path,
    test: pd.DataFrame,
    dataset_encoders: dict[str, Any] | None,
    max_rows: int | None = None,
) -> tuple[pd.DataFrame, dict[str, Any] | None, str]:
    """What ``model`` scores: ``(frame, encoders to apply or None, how)``."""
    own = read_encoders(model_dir)
    if own is None:
        if dataset_encoders is not None:
            log.warning("%s: the model has no encoders.json (a checkpoint from before models kept"
                        " them): scored on the dataset's ids, unchecked", model_dir)
            return test, None, UNCHECKED_IDS
        return test, None, DATASET_IDS
    check_encoders(own, model.schema, str(Path(model_dir) / "encoders.json"))
    if dataset_encoders is not None and own.get("fields") == dataset_encoders.get("fields"):
        return test, None, DATASET_IDS
    try:
        raw = read_raw_values(processed_dir, model.schema.names, max_rows)
    except DatasetError as exc:
        differ = [n for n in model.schema.names if (dataset_encoders or {}).get("fields", {}).get(n)
                  != own["fields"].get(n)]
        raise DatasetError(
            f"{model_dir}: the model's encoders differ from {processed_dir}'s in {len(differ)} of"
            f" {len(model.schema.names)} fields (such as {differ[:3]}), so its ids mean other"
            f" values there; {exc}") from None
    return raw, own, OWN_ENCODERS


def evaluate_models(
    processed_dir: str | Path,
    model_dirs: dict[str, str | Path],
    config: EvalConfig | None = None,
    label_column: str = "label",
    max_rows: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics per model name on the test split; also the constant-median and oracle rows."""
    config = config or EvalConfig()
    scores = score_test(processed_dir, model_dirs, config.batch_size, label_column, max_rows)
    y = scores.labels
    results: dict[str, dict[str, Any]] = {
        name: metrics.evaluate_predictions(y, pred, config)
        for name, pred in scores.predictions.items()}
    train_labels = label_array(read_split(processed_dir, "train", columns=[label_column]),
                               label_column)
    constant = np.full_like(y, float(np.median(train_labels)))
    results[TRAIN_MEDIAN] = metrics.evaluate_predictions(y, constant, config)
    if "oracle_median" in scores.test.columns:
        oracle = scores.test["oracle_median"].to_numpy(dtype=np.float64)
        results[ORACLE] = metrics.evaluate_predictions(y, oracle, config)
    return results


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: one row per model, MAE and both XAUC variants, each named; the headline
    variant (tie-aware when the labels tie) is marked."""
    first = next(iter(results.values()))
    configured = first["xauc_variant"]
    headline = first["xauc_headline_variant"]
    columns = [("xauc", configured)]
    if configured != "tie_aware":
        columns.append(("xauc_tie_aware", "tie_aware"))
    header = " | ".join(xauc_header(variant, headline) for _, variant in columns)
    lines = [
        f"| model | MAE ↓ | {header} | rows |",
        "|---|---:|" + "---:|" * len(columns) + "---:|",
    ]
    for name, r in results.items():
        cells = " | ".join(f"{r[key]:.4f}" for key, _ in columns)
        lines.append(f"| {name} | {r['mae']:.4f} | {cells} | {r['n']} |")
    return "\n".join(lines)


def headline_variant(report: dict[str, Any]) -> str:
    """The XAUC variant a report (``report.json``) leads with: tie-aware when the test labels tie."""
    return report.get("xauc_headline_variant") or report["eval_config"]["xauc"]


def xauc_header(variant: str, headline: str) -> str:
    """A column title that names the XAUC variant (and marks the headline one)."""
    short = variant.replace("_", "-")
    return f"**XAUC {short} (headline)** ↑" if variant == headline else f"XAUC {short} ↑"

"""Score trained models on the test split, beside the training median and the oracle floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from grmodel import metrics
from grmodel.checkpoint import load_checkpoint
from grmodel.config import EvalConfig
from grmodel.features import DatasetError, FeatureSchema, label_array, read_encoders, read_split
from grmodel.predict import predict_frame

TRAIN_MEDIAN = "train median"
ORACLE = "oracle (median)"


def evaluate_models(
    processed_dir: str | Path,
    model_dirs: dict[str, str | Path],
    config: EvalConfig | None = None,
    label_column: str = "label",
    max_rows: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics per model name on the test split; also the constant-median and oracle rows."""
    config = config or EvalConfig()
    test = read_split(processed_dir, "test", max_rows)
    source = str(Path(processed_dir) / "test.parquet")
    y = label_array(test, label_column, source)
    results: dict[str, dict[str, Any]] = {}
    for name, model_dir in model_dirs.items():
        model, _ = load_checkpoint(model_dir)
        check_same_encoders(model_dir, model.schema, processed_dir)
        pred = predict_frame(model, test, batch_size=config.batch_size)
        results[name] = metrics.evaluate_predictions(y, pred, config)
    train_labels = label_array(read_split(processed_dir, "train"), label_column)
    constant = np.full_like(y, float(np.median(train_labels)))
    results[TRAIN_MEDIAN] = metrics.evaluate_predictions(y, constant, config)
    if "oracle_median" in test.columns:
        oracle = test["oracle_median"].to_numpy(dtype=np.float64)
        results[ORACLE] = metrics.evaluate_predictions(y, oracle, config)
    return results


def check_same_encoders(model_dir: str | Path, schema: FeatureSchema,
                        processed_dir: str | Path) -> None:
    """Refuse to score a model on a dataset whose ids mean other values than in the model's
    training data: the encoders the model carries against the dataset's, field by field.
    (A model or dataset without encoders, written by an older version, cannot be checked.)"""
    ours, theirs = read_encoders(model_dir), read_encoders(processed_dir)
    if ours is None or theirs is None:
        return
    names = [spec.name for spec in schema.fields]
    differ = [name for name in names
              if ours.get("fields", {}).get(name) != theirs.get("fields", {}).get(name)]
    if differ:
        shown = ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
        raise DatasetError(f"{model_dir}: its encoders differ from {processed_dir}'s in"
                           f" {len(differ)} of {len(names)} fields ({shown}) (rule: a model is"
                           " scored on data encoded with its own encoders: its training dataset"
                           " or one built with the same encoders)")


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

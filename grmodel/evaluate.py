"""Score trained models on the test split, beside the training median and the oracle floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from grmodel import metrics
from grmodel.checkpoint import load_checkpoint
from grmodel.config import EvalConfig
from grmodel.features import label_array, read_split
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
        pred = predict_frame(model, test, batch_size=config.batch_size)
        results[name] = metrics.evaluate_predictions(y, pred, config)
    train_labels = label_array(read_split(processed_dir, "train"), label_column)
    constant = np.full_like(y, float(np.median(train_labels)))
    results[TRAIN_MEDIAN] = metrics.evaluate_predictions(y, constant, config)
    if "oracle_median" in test.columns:
        oracle = test["oracle_median"].to_numpy(dtype=np.float64)
        results[ORACLE] = metrics.evaluate_predictions(y, oracle, config)
    return results


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: one row per model, MAE and both XAUC variants."""
    lines = [
        "| model | MAE ↓ | XAUC ↑ | XAUC tie-aware ↑ | rows |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['mae']:.4f} | {r['xauc']:.4f} | {r['xauc_tie_aware']:.4f} | {r['n']} |"
        )
    return "\n".join(lines)

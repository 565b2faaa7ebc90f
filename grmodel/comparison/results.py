"""Score a comparison's trained runs on one test split and write its report and figures.

Layout of the output directory::

    report.json, report.md     everything, and the readable summary
    figures/*.png              see grmodel/comparison/figures.py

Every run is scored by grmodel/evaluate.py on the same test split, beside the train median and,
for generated data, the oracle.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grmodel import __version__
from grmodel.checkpoint import load_checkpoint
from grmodel.comparison.figures import render_figures
from grmodel.comparison.plan import Comparison, ComparisonPlan, Overrides, Row
from grmodel.comparison.report import (
    compare_rows,
    config_changes,
    summarize_constant,
    summarize_row,
    write_reports,
)
from grmodel.config import RunConfig
from grmodel.evaluate import ORACLE, TRAIN_MEDIAN, evaluate_models
from grmodel.features import label_array, read_manifest, read_split
from grmodel.models import WatchTimeModel
from grmodel.models.gr import GRModel
from grmodel.predict import predict_arrays
from grmodel.training.records import dataset_fingerprint
from grmodel.vocab import N_SPECIAL

log = logging.getLogger(__name__)

# Test rows drawn (seeded) for the distribution and generated-token figures.
FIGURE_ROWS = 20_000
DISTRIBUTION_BINS = 40


def run_entry(row: Row, seed: int, model_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """One run as the report lists it (``model_dir`` relative to the report, or absolute)."""
    return {"row": row.name, "model_name": row.model_name, "seed": seed, "model_dir": str(model_dir),
            **record}


def write_comparison_report(
    plan: ComparisonPlan,
    runs: list[dict[str, Any]],
    out_dir: str | Path,
    *,
    figure_rows: int = FIGURE_ROWS,
    generated: dict[str, Any] | None = None,
    started: float | None = None,
    paper: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate the trained ``runs`` of ``plan`` on the test split; write report and figures
    (``paper``: a paper's numbers for the Markdown, see grmodel/comparison/report.py)."""
    started = time.perf_counter() if started is None else started
    out, data_dir, experiment, common = Path(out_dir), plan.data_dir, plan.comparison, plan.common
    manifest = read_manifest(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    log.info("evaluating %d runs on the test split", len(runs))
    keys = {f"{r['row']}/seed{r['seed']}": out / r["model_dir"] for r in runs}
    results = evaluate_models(data_dir, keys, common.eval, label_column=common.data.label_column)
    for r, key in zip(runs, keys):
        r["test"] = results[key]

    labels = results[TRAIN_MEDIAN]
    headline = labels["xauc_headline_variant"]
    summary = {row.name: summarize_row([r for r in runs if r["row"] == row.name])
               for row in experiment.rows}
    for constant in (TRAIN_MEDIAN, ORACLE):
        if constant in results:
            summary[constant] = summarize_constant(results[constant])
    report = {
        "experiment": experiment.name,
        "paper": paper,  # the paper's numbers listed beside ours, if any (reporting/paper.py)
        "title": experiment.title,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "grmodel_version": __version__,
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
        "dataset": {
            "path": str(data_dir),
            "fingerprint": dataset_fingerprint(data_dir),
            "label": manifest.get("label"),
            "test_rows": results[TRAIN_MEDIAN]["n"],
            "generated": generated,
            "manifest": manifest,
        },
        "seeds": plan.seeds,
        "reference_row": experiment.reference,
        "eval_config": dataclasses.asdict(common.eval),
        "overrides": {"common": list(plan.overrides.common),
                      "scoped": {k: list(v) for k, v in plan.overrides.scoped}},
        "rows": _row_records(experiment, plan.overrides, plan.runs),
        "runs": runs,
        "summary": summary,
        "labels_tie": labels["labels_tie"],
        "xauc_headline_variant": headline,
        "comparisons": compare_rows(runs, experiment.reference, headline),
        "reference_results": {k: results[k] for k in (TRAIN_MEDIAN, ORACLE) if k in results},
        "figure_data": figure_data(runs, results, out, data_dir, common, figure_rows),
        "train_wall_seconds": sum(r["wall_seconds"] for r in runs),
    }
    report["figures"] = render_figures(report, out / "figures")
    report["wall_seconds"] = time.perf_counter() - started
    json_path, md_path = write_reports(report, out, paper)
    log.info("wrote %s and %s (%.1f s)", md_path, json_path, report["wall_seconds"])
    return report


def _row_records(experiment: Comparison, overrides: Overrides,
                 plan: list[tuple[Any, int, RunConfig]]) -> dict[str, Any]:
    first = {}
    for row, _, config in plan:
        first.setdefault(row.name, config.to_dict())
    return {
        row.name: {"model_name": row.model_name, "defining_overrides": list(row.overrides),
                   "overrides": overrides.row_items(row), "config_changes": config_changes(first[row.name]),
                   "config": first[row.name]}
        for row in experiment.rows
    }


# -- figure data --------------------------------------------------------------------------
def figure_data(runs: list[dict[str, Any]], results: dict[str, dict[str, Any]], out: Path,
                data_dir: Path, common: RunConfig, figure_rows: int) -> dict[str, Any]:
    """Histograms (Fig. 5b-d) and token counts (Fig. 4) from each row's first seed.

    Histograms use a seeded sample of at most ``figure_rows`` test rows on shared bins from 0
    to the sample's label p99 (larger values land in the last bin); the means and variances
    shown beside them are those of the whole test split.
    """
    label_column = common.data.label_column
    test = read_split(data_dir, "test")
    if len(test) > figure_rows:
        rows = np.sort(np.random.default_rng(0).choice(len(test), figure_rows, replace=False))
        test = test.iloc[rows].reset_index(drop=True)
    y = label_array(test, label_column)
    top = float(np.quantile(y, 0.99))
    edges = np.linspace(0.0, top if top > 0 else max(float(y.max()), 1.0), DISTRIBUTION_BINS + 1)

    def histogram(values: np.ndarray) -> list[int]:
        return np.histogram(np.clip(values, 0.0, edges[-1]), bins=edges)[0].tolist()

    def entry(values: np.ndarray, metrics: dict[str, Any], seed: int | None) -> dict[str, Any]:
        dist = metrics["distribution"]
        return {"seed": seed, "rows": len(y), "edges": edges.tolist(), "true": histogram(y),
                "pred": histogram(values), "true_mean": dist["true"]["mean"],
                "true_var": dist["true"]["var"], "pred_mean": dist["pred"]["mean"],
                "pred_var": dist["pred"]["var"]}

    distributions, tokens = {}, {}
    train_labels = None
    for r in runs:
        if r["row"] in distributions:
            continue  # first seed only
        model, _ = load_checkpoint(out / r["model_dir"])
        ids, mask = model.schema.arrays(test)
        pred, generated = sample_predictions(model, ids, mask, common.eval.batch_size)
        distributions[r["row"]] = entry(pred, r["test"], r["seed"])
        if isinstance(model, GRModel):
            if train_labels is None:
                frame = read_split(data_dir, "train", common.data.max_train_rows)
                train_labels = label_array(frame, label_column)
            tokens[r["row"]] = token_frequency(model, train_labels, generated)
    if ORACLE in results and "oracle_median" in test.columns:
        distributions[ORACLE] = entry(test["oracle_median"].to_numpy(np.float64), results[ORACLE], None)
    return {"distributions": distributions, "token_frequency": tokens,
            "sample_rows": len(y), "histogram_top": float(edges[-1])}


def sample_predictions(model: WatchTimeModel, ids: np.ndarray, mask: np.ndarray, batch_size: int
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions, and for GR the generated token ids of the same decoding pass."""
    if not isinstance(model, GRModel):
        return predict_arrays(model, ids, mask, batch_size=batch_size), None
    preds, tokens = [], []
    for start in range(0, len(ids), batch_size):
        pred, chosen = model.generate(torch.as_tensor(ids[start:start + batch_size]),
                                      torch.as_tensor(mask[start:start + batch_size]),
                                      return_tokens=True)
        preds.append(pred.double().numpy())
        tokens.append(chosen.numpy())
    return np.concatenate(preds), np.concatenate(tokens)


def token_frequency(model: GRModel, train_labels: np.ndarray, generated: np.ndarray | None
                    ) -> dict[str, Any]:
    """Count of each value token in the training label encodings and in generated sequences."""
    size = model.vocab.size
    encoded, _ = model.codec.token_sequences(train_labels)
    record = {
        "vocab_kind": model.vocab.kind,
        "values": model.vocab.values.tolist(),
        "train": np.bincount(encoded.ravel(), minlength=size)[N_SPECIAL:].tolist(),
        "generated": None,
        "generated_rows": 0,
    }
    if generated is not None:
        record["generated"] = np.bincount(generated.ravel(), minlength=size)[N_SPECIAL:].tolist()
        record["generated_rows"] = len(generated)
    return record

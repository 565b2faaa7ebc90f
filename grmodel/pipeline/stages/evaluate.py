"""The evaluation stage: every trained model on the same test split beside the train median and
the oracle, with the report, figures and headline metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grmodel.atomic import write_json_atomic, write_text_atomic
from grmodel.comparison.report import results_table
from grmodel.comparison.results import run_entry, write_comparison_report
from grmodel.pipeline.live import StageTracking
from grmodel.pipeline.stages.plan import model_plan
from grmodel.pipeline.stages.record import StageError
from grmodel.pipeline.stages.runner import StageRun
from grmodel.reporting.html import render_report_html
from grmodel.reporting.paper import PAPER_ANCHORS
from grmodel.tracking import git_commit, metric_key
from grmodel.training.records import dataset_fingerprint, finished_run


def evaluate(
    processed: str | Path,
    model_dirs: dict[str, str | Path],
    out_dir: str | Path,
    *,
    overrides: list[str] | None = None,
    seeds: int = 1,
    data_version: str = "",
    tracking: StageTracking | None = None,
) -> dict[str, Any]:
    """Score every trained model (``{model: train output}``) on the same test split beside the
    train median and the oracle; write the report, figures, ``metrics.json`` and
    ``report.html`` (figures inlined) into ``out_dir``."""
    stage = StageRun("evaluate", tracking)
    data = Path(processed)
    rows = list(model_dirs)
    plan = model_plan(data, rows, overrides, seeds)
    fingerprint = dataset_fingerprint(data)
    runs = []
    for row, seed, config in plan.runs:
        model_dir = Path(model_dirs[row.name]) / f"seed{seed}"
        record = finished_run(model_dir, config, fingerprint)
        if record is None:
            raise StageError(f"{model_dir}: no finished {row.name} run of this config on this data"
                             " (rule: evaluate gets the train outputs of the same pipeline run)")
        runs.append(run_entry(row, seed, model_dir.resolve(), {**record, "resumed": False}))
    with stage.output(out_dir) as tmp:
        # GR against the baselines is the paper's Table 1 setting: its numbers go beside ours.
        report = write_comparison_report(plan, runs, tmp, paper=PAPER_ANCHORS["table1"])
        metrics = headline_metrics(report)
        write_json_atomic(tmp / "metrics.json", metrics)
        provenance = {"data version": data_version or "unknown", "git commit": git_commit()}
        write_text_atomic(tmp / "report.html",
                          render_report_html(report, tmp / "figures", provenance))
        stage.record(
            params={"eval": report["eval_config"]},
            metrics={f"test.{row}.{k}": v for row, m in metrics.items() for k, v in m.items()},
            artifacts=["report.md", "report.json", "report.html", "figures"],
        )
    return {"metrics": metrics, "table": results_table(report)}


def headline_metrics(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{model: {"mae", "xauc"}}``: mean over seeds, with the median and oracle rows; a model
    that collapsed on every seed also has ``collapsed: 1.0`` (the gate leaves it out of the
    baselines GR must beat)."""
    return {metric_key(name): {"mae": float(s["mae"]["mean"]), "xauc": float(s["xauc"]["mean"]),
                               **({"collapsed": 1.0} if _collapsed_everywhere(s) else {})}
            for name, s in report["summary"].items()}


def _collapsed_everywhere(summary: dict[str, Any]) -> bool:
    seeds = summary.get("seeds") or []
    return bool(seeds) and len(summary.get("collapsed") or []) == len(seeds)

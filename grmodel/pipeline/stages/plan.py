"""Which models, seeds and configs a pipeline run trains: GR, the model it ships, and its
baselines, each configured from ``grmodel.config`` plus the run's overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grmodel.comparison.plan import ComparisonPlan, model_comparison, plan_comparison

GR = "gr"  # the model the pipeline ships; the others trained beside it are its baselines
COMPARISON = ("pipeline", "GR against the baselines")  # the evaluation report's name and title


def gr_config(data: Path, overrides: list[str] | None) -> Any:
    """GR's config for this run: the vocabulary and token stages use it too."""
    return model_plan(data, [GR], overrides, 1).runs[0][2]


# A baseline that collapses to a constant is kept and marked, not a failed run: the gate leaves
# it out of the bars GR must beat, with the reason shown. GR collapsing fails its step (the
# library default, train.on_collapse=fail); `BASELINE:train.on_collapse=fail` restores it for a
# baseline.
BASELINE_ON_COLLAPSE = "train.on_collapse=warn"


def model_plan(data: Path, models: list[str], overrides: list[str] | None, seeds: int
               ) -> ComparisonPlan:
    """Every (model, seed) run with its config: the library defaults, the models' named
    defaults (``grmodel.config.MODEL_DEFAULTS``), baselines kept when they collapse, then the
    ``[MODEL:]key=value`` overrides."""
    comparison = model_comparison(*COMPARISON, models, reference=GR)
    kept = [f"{model}:{BASELINE_ON_COLLAPSE}" for model in models if model != GR]
    return plan_comparison(comparison, data, seeds=seeds, overrides=[*kept, *(overrides or [])])

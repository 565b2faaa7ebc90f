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


def check_overrides(baselines: list[str], overrides: list[str] | None) -> None:
    """Refuse, before a run starts, the overrides its plan stage would refuse (a malformed
    item, an unknown key, a value out of its range): the plan of GR and ``baselines``."""
    model_plan(Path("."), [GR, *baselines], overrides, 1)


def model_plan(data: Path, models: list[str], overrides: list[str] | None, seeds: int
               ) -> ComparisonPlan:
    """Every (model, seed) run with its config: the library defaults, the models' named
    defaults (``grmodel.config.MODEL_DEFAULTS``), then the ``[MODEL:]key=value`` overrides.

    A baseline keeps a collapsed model, marked (``train.on_collapse=warn``), so that the run
    goes on and the gate leaves it out of what GR must beat, saying so; GR, the model shipped,
    fails on collapse. ``MODEL:train.on_collapse=fail`` in the overrides restores the failure."""
    comparison = model_comparison(*COMPARISON, models, reference=GR)
    kept = [f"{m}:train.on_collapse=warn" for m in models if m != GR]
    return plan_comparison(comparison, data, seeds=seeds, overrides=[*kept, *(overrides or [])])

"""The same small tuning budget for every model, spent on the validation split.

A comparison between models is only fair when each gets the same chance to fit the data: the
same number of candidate settings, each trained for the same short budget and judged by the
same validation metric (never the test split). :data:`TUNING_GRIDS` holds every model's
candidates (the one place they are written); :func:`tune` trains them and returns the chosen
overrides with a record of every trial, which the experiment reports print.

The budget is counted in candidates, training rows and epochs. An epoch bounds a torch model's
passes over the rows; an array model (the GBDT) has no epochs: each of its candidates fits the
same rows up to its own early stop on the validation split (its rounds are capped by
``head.gbdt_rounds``), which is how such a model is fitted at all.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grmodel.config import ConfigError, RunConfig
from grmodel.outputs import is_grmodel_output
from grmodel.training.loop import train_model

log = logging.getLogger(__name__)

_LRS = ("train.lr=2.5e-4", "train.lr=5e-4", "train.lr=1e-3", "train.lr=2e-3")
# Four candidates per model: a learning-rate grid, and for TPM two learning rates by the two
# uncertainty weights that suit different label shapes (w_var 1.0 is the TPM paper's;
# docs/baselines.md, TPM); for the GBDT two shrinkages by two tree sizes.
TUNING_GRIDS: dict[str, tuple[tuple[str, ...], ...]] = {
    **{model: tuple((lr,) for lr in _LRS) for model in ("gr", "cread", "d2q", "vr", "wlr")},
    "tpm": tuple((lr, f"head.tpm_w_var={w}") for lr in ("train.lr=5e-4", "train.lr=1e-3")
                 for w in (0.1, 1.0)),
    "gbdt": tuple((lr, f"head.gbdt_leaves={n}") for lr in ("train.lr=0.05", "train.lr=0.1")
                  for n in (15, 63)),
}


@dataclass(frozen=True)
class TuningBudget:
    """What each candidate is trained on: ``epochs`` over at most ``max_train_rows`` rows."""

    epochs: int = 1
    max_train_rows: int | None = 50_000

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"tuning budget epochs={self.epochs}: must be >= 1")
        if self.max_train_rows is not None and self.max_train_rows < 1:
            raise ConfigError(f"tuning budget max_train_rows={self.max_train_rows}: must be >= 1")


def tune(config: RunConfig, work_dir: str | Path, budget: TuningBudget | None = None
         ) -> dict[str, Any]:
    """Train every candidate of ``config.model_name``'s grid for ``budget``; pick by validation.

    Returns ``{"chosen": [overrides], "metric", "budget", "trials": [...]}``. A candidate whose
    model collapsed (grmodel/collapse.py) is chosen only when every candidate did. The trial
    models are removed once judged; only the record stays.
    """
    budget = budget or TuningBudget()
    grid = TUNING_GRIDS.get(config.model_name)
    if grid is None:
        raise ConfigError(f"no tuning grid for model {config.model_name!r}; grids: {sorted(TUNING_GRIDS)}")
    metric = config.train.select_metric
    work = Path(work_dir)
    rows = budget.max_train_rows
    if config.data.max_train_rows is not None:
        rows = min(rows, config.data.max_train_rows) if rows is not None else config.data.max_train_rows
    trials = []
    for k, candidate in enumerate(grid):
        trial = config.with_overrides([
            *candidate, f"train.epochs={budget.epochs}", f"data.max_train_rows={rows}",
            "train.on_collapse=warn",
        ])
        trial_dir = work / f"trial{k}"
        log.info("tuning %s: trial %d/%d %s", config.model_name, k + 1, len(grid), " ".join(candidate))
        result = train_model(trial, trial_dir)
        # Only the model this trial just wrote is removed: never a folder grmodel did not write.
        if is_grmodel_output(trial_dir):
            shutil.rmtree(trial_dir)
        collapsed = bool(result.collapse and result.collapse["collapsed"])
        trials.append({"overrides": list(candidate), "valid": result.best_valid,
                       "collapsed": collapsed})
    healthy = [t for t in trials if not t["collapsed"]] or trials
    best = (min if metric == "mae" else max)(healthy, key=lambda t: t["valid"][metric])
    return {"chosen": best["overrides"], "metric": metric, "budget": dataclasses.asdict(budget),
            "trials": trials}

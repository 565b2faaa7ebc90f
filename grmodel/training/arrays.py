"""The trainer of the zoo's array models (grmodel/models/base.py ArrayModel, the GBDT): one fit
on the whole train split in memory, stopped on the validation split, then the same verdict and
publishing as the epoch trainer's.

What it records is the epoch trainer's record, read for a model without epochs: a history entry
is a step of the fit (a GBDT's boosting round, ``epoch`` counting from 0) with the validation
MAE and XAUC at that step, at most :data:`HISTORY_POINTS` of them spread over the fit plus the
kept step; ``best_epoch`` is the kept step; ``samples_per_second`` counts rows times steps.
Streaming input, several processes and resumable states are the epoch trainer's: an array
model refuses the first two and needs none of the last (a killed fit is refitted).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from grmodel import metrics
from grmodel.atomic import atomic_directory
from grmodel.checkpoint import checkpoint_meta, data_encoders, save_checkpoint
from grmodel.collapse import ModelCollapsed
from grmodel.config import ConfigError, RunConfig
from grmodel.features import FeatureSchema
from grmodel.models import ArrayModel, model_class
from grmodel.training.batches import SplitArrays
from grmodel.training.epochs import collapse_verdict
from grmodel.training.records import TrainResult, trained_on

log = logging.getLogger(__name__)

HISTORY_POINTS = 20  # validation MAE and XAUC recorded at this many steps of a fit


def check_array_config(config: RunConfig, world_size: int = 1) -> None:
    """An array model trains in one process on the train split in memory."""
    if config.train.streaming:
        raise ConfigError(f"{config.model_name}: train.streaming=true is not supported (rule: an"
                          " array model fits on the train split in memory)")
    if world_size > 1:
        raise ConfigError(f"{config.model_name}: trains in one process, not under torchrun"
                          f" ({world_size} processes)")


def fit_array_model(config: RunConfig, schema: FeatureSchema, train: SplitArrays,
                    valid: SplitArrays, out_dir: str | Path,
                    label_state: dict | None = None) -> TrainResult:
    """Fit ``config.model_name`` on ``train``, keep its best step on ``valid``, judge it
    (grmodel/collapse.py) and write the model directory once, atomically."""
    check_array_config(config)
    cls = model_class(config.model_name)
    if label_state is None:
        label_state = cls.fit_label_state(train.label, config, train.ids, schema)
    model: ArrayModel = cls(schema, config, label_state)
    started = time.perf_counter()
    curve = model.fit(train.ids, train.label, valid.ids, valid.label)
    seconds = time.perf_counter() - started
    kept = model.kept_steps
    steps = _history_steps(len(curve), kept)
    history = [{"epoch": step - 1, "step": step, "valid_mae": metrics.mae(valid.label, pred),
                "valid_xauc": metrics.xauc(valid.label, pred)}
               for step, pred in zip(steps, model.staged_predictions(valid.ids, steps))]
    best = next(h for h in history if h["epoch"] == kept - 1)
    best_valid = {"mae": best["valid_mae"], "xauc": best["valid_xauc"]}
    log.info("%s: %d steps, kept %d: valid MAE %.4f XAUC %.4f (%.1f s)", config.model_name,
             len(curve), kept, best_valid["mae"], best_valid["xauc"], seconds)
    verdict = collapse_verdict(config, model, valid)
    if verdict.collapsed:
        message = (f"{config.model_name}: the trained model collapsed on the validation split:"
                   f" {verdict.reason}")
        if config.train.on_collapse == "fail":
            raise ModelCollapsed(f"{message}; nothing was written (train.on_collapse=warn keeps"
                                 " such a model, marked)")
        log.warning("%s; the model is kept and marked (train.on_collapse=warn)", message)
    meta = checkpoint_meta(model, epoch=kept - 1, step=kept, metrics=best_valid, history=history)
    meta["collapse"] = verdict.to_dict()
    meta["dataset_fingerprint"] = trained_on(config.data.processed_dir)
    with atomic_directory(out_dir) as staging:
        save_checkpoint(staging, model, meta, data_encoders(config.data.processed_dir, schema))
    return TrainResult(model_dir=Path(out_dir), best_epoch=kept - 1, best_valid=best_valid,
                       history=history, train_seconds=seconds,
                       samples_per_second=len(train) * len(curve) / max(seconds, 1e-9),
                       collapse=verdict.to_dict())


def _history_steps(total: int, kept: int) -> list[int]:
    """Up to HISTORY_POINTS steps (1-based counts) spread over ``total``, and ``kept``."""
    spread = np.unique(np.linspace(1, total, min(HISTORY_POINTS, total)).round().astype(int))
    return sorted({*spread.tolist(), kept})

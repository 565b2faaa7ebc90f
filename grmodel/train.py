"""One trainer for every model in the zoo.

The validation split (never the test split) selects the epoch; early stopping ends a run
whose validation metric has not improved for ``patience`` epochs. The best epoch's weights are
kept in memory and the model directory is written once, atomically, when the run finishes, so
a failed run leaves no model directory that looks complete.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grmodel import metrics
from grmodel.atomic import atomic_directory
from grmodel.checkpoint import checkpoint_meta, save_checkpoint
from grmodel.config import RunConfig
from grmodel.features import FeatureSchema, label_array, read_manifest, read_split
from grmodel.models import WatchTimeModel, model_class
from grmodel.predict import autocast, predict_arrays, resolve_device

log = logging.getLogger(__name__)


@dataclass
class SplitArrays:
    """A split held in memory as the arrays a model consumes."""

    ids: np.ndarray  # int32 [N, F]
    mask: np.ndarray  # float32 [N, F]
    label: np.ndarray  # float64 [N]

    @classmethod
    def load(cls, processed_dir: str | Path, split: str, schema: FeatureSchema, label_column: str,
             max_rows: int | None = None) -> SplitArrays:
        frame = read_split(processed_dir, split, max_rows)
        source = str(Path(processed_dir) / f"{split}.parquet")
        ids, mask = schema.arrays(frame, source)
        return cls(ids.astype(np.int32), mask, label_array(frame, label_column, source))

    def __len__(self) -> int:
        return len(self.label)


@dataclass
class TrainResult:
    model_dir: Path
    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds third-party code that uses the global RNG
    torch.manual_seed(seed)


def build_model(config: RunConfig, schema: FeatureSchema, train: SplitArrays) -> WatchTimeModel:
    cls = model_class(config.model_name)
    return cls(schema, config, cls.fit_label_state(train.label, config, train.ids, schema))


def make_optimizer(model: WatchTimeModel, config: RunConfig) -> torch.optim.Optimizer:
    """Adam; weight decay on embedding tables only (method.md)."""
    tables = {id(p) for p in model.embedding_parameters()}
    decayed = [p for p in model.parameters() if id(p) in tables]
    rest = [p for p in model.parameters() if id(p) not in tables]
    groups = [
        {"params": decayed, "weight_decay": config.train.embedding_weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.Adam(groups, lr=config.train.lr)


def validation_metrics(model: WatchTimeModel, data: SplitArrays, batch_size: int) -> dict[str, float]:
    pred = predict_arrays(model, data.ids, data.mask, batch_size=batch_size)
    return {"mae": metrics.mae(data.label, pred), "xauc": metrics.xauc(data.label, pred)}


def _improved(candidate: dict[str, float], best: dict[str, float] | None, metric: str) -> bool:
    if best is None:
        return True
    return candidate[metric] < best[metric] if metric == "mae" else candidate[metric] > best[metric]


def train_model(config: RunConfig, out_dir: str | Path) -> TrainResult:
    """Train ``config.model_name`` on ``config.data.processed_dir``; write the best model."""
    dc = config.data
    manifest = read_manifest(dc.processed_dir)
    schema = FeatureSchema.from_dict(manifest["features"])
    train = SplitArrays.load(dc.processed_dir, "train", schema, dc.label_column, dc.max_train_rows)
    valid = SplitArrays.load(dc.processed_dir, "valid", schema, dc.label_column, dc.max_eval_rows)
    if len(train) == 0 or len(valid) < 2:
        raise ValueError(
            f"{dc.processed_dir}: train has {len(train)} rows and valid {len(valid)}"
            " (rule: training needs train rows and at least 2 validation rows)"
        )
    return fit(config, schema, train, valid, out_dir)


def fit(
    config: RunConfig,
    schema: FeatureSchema,
    train: SplitArrays,
    valid: SplitArrays,
    out_dir: str | Path,
) -> TrainResult:
    tc = config.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    seed_everything(tc.seed)
    device = resolve_device(tc.device)
    model = build_model(config, schema, train).to(device)
    extra = {k: torch.from_numpy(_compact(v)) for k, v in model.targets(train.label).items()}
    optimizer = make_optimizer(model, config)

    batches_per_epoch = math.ceil(len(train) / tc.batch_size)
    total_steps = tc.epochs * batches_per_epoch
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)

    ids_all = torch.from_numpy(train.ids)
    mask_all = torch.from_numpy(train.mask)
    label_all = torch.from_numpy(train.label.astype(np.float32))
    shuffler = torch.Generator().manual_seed(tc.seed)
    history: list[dict[str, Any]] = []
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, best_step, stale, step, seen, busy = -1, 0, 0, 0, 0, 0.0
    pin = device.type == "cuda"

    for epoch in range(tc.epochs):
        if step >= total_steps:
            break
        model.train()
        order = torch.randperm(len(train), generator=shuffler)
        running, count = 0.0, 0
        bar = _progress(batches_per_epoch, epoch, tc.epochs, tc.progress)
        t0 = time.perf_counter()
        for b in range(batches_per_epoch):
            if step >= total_steps:
                break
            rows = order[b * tc.batch_size : (b + 1) * tc.batch_size]
            batch = {
                "ids": _to(ids_all[rows].long(), device, pin),
                "mask": _to(mask_all[rows], device, pin),
                "label": _to(label_all[rows], device, pin),
            }
            batch.update({k: _to(_widen(v[rows]), device, pin) for k, v in extra.items()})
            with autocast(device, tc.amp_bf16):
                loss, parts = model.loss(batch, step, total_steps)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{config.model_name}: loss became {loss.item()} at step {step} (epoch {epoch});"
                    " lower train.lr or check the labels"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            count += len(rows)
            running += loss.item() * len(rows)
            elapsed = time.perf_counter() - t0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running / count:.4f}", sps=f"{count / max(elapsed, 1e-9):.0f}")
        epoch_seconds = time.perf_counter() - t0
        busy += epoch_seconds
        seen += count
        if bar is not None:
            bar.close()
        scores = validation_metrics(model, valid, config.eval.batch_size)
        record = {
            "epoch": epoch,
            "step": step,
            "train_loss": running / max(count, 1),
            "valid_mae": scores["mae"],
            "valid_xauc": scores["xauc"],
            "samples_per_second": count / max(epoch_seconds, 1e-9),
            **{k: v for k, v in parts.items() if k == "p_truth"},
        }
        history.append(record)
        log.info(
            "%s epoch %d: loss %.4f valid MAE %.4f XAUC %.4f (%.0f samples/s)",
            config.model_name, epoch, record["train_loss"], scores["mae"], scores["xauc"],
            record["samples_per_second"],
        )
        if _improved(scores, best, tc.select_metric):
            best, best_epoch, best_step, stale = scores, epoch, step, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= tc.patience:
                log.info("early stop: no %s gain for %d epochs", tc.select_metric, stale)
                break

    assert best is not None  # at least one epoch ran: total_steps >= 1
    model.load_state_dict(best_state)
    meta = checkpoint_meta(model, epoch=best_epoch, step=best_step, metrics=best, history=history)
    with atomic_directory(out_dir) as staging:
        save_checkpoint(staging, model, meta)
    return TrainResult(
        model_dir=Path(out_dir),
        best_epoch=best_epoch,
        best_valid=best,
        history=history,
        train_seconds=busy,
        samples_per_second=seen / max(busy, 1e-9),
    )


def _compact(array: np.ndarray) -> np.ndarray:
    """Store integer targets (token ids, classes) as int32: half the memory of int64."""
    if np.issubdtype(array.dtype, np.integer) and array.size and abs(array).max() < 2**31:
        return array.astype(np.int32)
    return array


def _widen(t: torch.Tensor) -> torch.Tensor:
    """Targets are stored compactly; losses and lookups want int64 or float32."""
    return t.long() if not t.is_floating_point() else t.float()


def _to(t: torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    if pin:
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _progress(total: int, epoch: int, epochs: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False)

"""The epoch loop of the one trainer: steps, validation, selection of the best epoch, early
stopping, the resumable state's saves, and publishing the best model once, atomically.

Every rank runs the loop on its own batches; validation scores come from every rank's share,
so that selection and early stopping agree everywhere. Only rank 0 logs and writes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grmodel import collapse, metrics, progress
from grmodel.atomic import atomic_directory
from grmodel.checkpoint import checkpoint_meta, data_encoders, save_checkpoint
from grmodel.collapse import ModelCollapsed
from grmodel.config import RunConfig
from grmodel.distributed import (
    DistContext,
    all_reduce_sum,
    autocast,
    barrier,
    gather_rows,
    rank_seed,
    split_bounds,
    wrap_for_training,
)
from grmodel.features import read_manifest
from grmodel.interrupts import StepInterrupts
from grmodel.models import WatchTimeModel, ZooModel
from grmodel.predict import predict_arrays
from grmodel.training.batches import SplitArrays
from grmodel.training.records import TrainResult, trained_on
from grmodel.training.state import Progress, StateStore, restore

log = logging.getLogger(__name__)


class TrainingDiverged(ValueError, FloatingPointError):
    """The loss became NaN or infinite: the config or the labels, not a bug (names the rule)."""


def run_epochs(config: RunConfig, model: WatchTimeModel, source: Any, valid: SplitArrays,
               out_dir: str | Path, ctx: DistContext, store: StateStore | None,
               saved: dict[str, Any] | None,
               on_epoch: Callable[[dict[str, Any]], None] | None = None,
               interrupts: StepInterrupts | None = None) -> TrainResult:
    tc = config.train
    interrupts = interrupts or StepInterrupts()  # one never entered: no signal is deferred
    module = wrap_for_training(model, ctx)
    optimizer = make_optimizer(model, config)
    batches_per_epoch = source.batches_per_epoch
    total_steps = tc.epochs * batches_per_epoch
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)

    p = Progress()
    best_state: dict[str, torch.Tensor] = {}
    if saved is not None:
        p, best_state = restore(saved, model, optimizer, ctx)
        log_on_main(ctx, "resuming from step %d (epoch %d, batch %d) of %s", p.step, p.epoch, p.batch,
              store.directory if store else "?")
    elif ctx.rank > 0:
        # Same initial weights everywhere (seeded before the model was built); each rank then
        # draws its own dropout and CLEM sampling stream.
        torch.manual_seed(rank_seed(tc.seed, ctx.rank))
    pin = ctx.device.type == "cuda"
    parts: dict[str, float] = {}

    for epoch in range(p.epoch, tc.epochs):
        first = p.batch if epoch == p.epoch else 0
        if p.stopped or (p.step >= total_steps and first == 0):
            break
        model.train()
        # A resumed epoch starts with the loss sum and samples of its first part (on rank 0).
        resumed = p.count if first else 0
        running, count = (p.running, p.count) if first and ctx.is_main else (0.0, 0)
        bar = (progress.epoch_progress(config.model_name, batches_per_epoch, epoch, tc.epochs,
                                       first, bar=tc.progress) if ctx.is_main else None)
        t0 = time.perf_counter()
        b = first
        for batch in source.epoch(epoch, skip=first):
            if p.step >= total_steps:
                break
            rows = batch.pop("row")
            # Compact dtypes cross to the device (through pinned memory on CUDA), then widen.
            batch = {k: _widen(_to(v, ctx.device, pin)) for k, v in batch.items()}
            with autocast(ctx.device, tc.amp_bf16):
                loss, parts = module(batch, p.step, total_steps)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"{config.model_name}: loss became {loss.item()} at step {p.step} (epoch"
                    f" {epoch}, rank {ctx.rank}) (rule: the training loss stays finite: lower"
                    " train.lr, or rescale labels too large for the model's loss)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.lr_schedule != "constant":
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(p.step, total_steps, tc)
            optimizer.step()
            p.step += 1
            b += 1
            count += len(rows)
            running += loss.item() * len(rows)
            if bar is not None:
                elapsed = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(loss=f"{running / count:.4f}", sps=f"{count / max(elapsed, 1e-9):.0f}")
            every = tc.checkpoint_every_steps
            # Ctrl-C or SIGTERM arrived: this step is kept for --resume (one process), then stop.
            stopping = interrupts.pending is not None and ctx.world_size == 1
            if (store is not None and (stopping or every and p.step % every == 0)
                    and b < batches_per_epoch and p.step < total_steps):
                p.epoch, p.batch = epoch, b
                summed = all_reduce_sum([running, count], ctx)
                p.running, p.count = summed[0], int(summed[1])
                store.save(config, model, optimizer, best_state, p, ctx)
                # The epoch's sums so far now live on rank 0 (as they would after a resume).
                running, count = (p.running, p.count) if ctx.is_main else (0.0, 0)
            interrupts.check()
        epoch_seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        running, total = all_reduce_sum([running, count], ctx)
        p.busy += epoch_seconds
        p.seen += int(total) - resumed
        scores = validation_metrics(model, valid, config.eval.batch_size, ctx)
        record = {
            "epoch": epoch,
            "step": p.step,
            "train_loss": running / max(total, 1),
            "valid_mae": scores["mae"],
            "valid_xauc": scores["xauc"],
            "samples_per_second": (total - resumed) / max(epoch_seconds, 1e-9),
            **{k: v for k, v in parts.items() if k == "p_truth"},
        }
        p.history.append(record)
        if on_epoch is not None and ctx.is_main:
            on_epoch(record)
        log_on_main(ctx, "%s epoch %d: loss %.4f valid MAE %.4f XAUC %.4f (%.0f samples/s)",
              config.model_name, epoch, record["train_loss"], scores["mae"], scores["xauc"],
              record["samples_per_second"])
        if _improved(scores, p.best, tc.select_metric):
            p.best, p.best_epoch, p.best_step, p.stale = scores, epoch, p.step, 0
            if ctx.is_main:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            p.stale += 1
            if p.stale >= tc.patience:
                log_on_main(ctx, "early stop: no %s gain for %d epochs", tc.select_metric, p.stale)
                p.stopped = True
        p.epoch, p.batch, p.running, p.count = epoch + 1, 0, 0.0, 0
        if store is not None:
            store.save(config, model, optimizer, best_state, p, ctx)
        interrupts.check()

    if p.best is None:
        raise RuntimeError(f"{config.model_name}: no epoch finished (total_steps={total_steps})")
    verdict = None
    calibration = None
    if ctx.is_main:
        model.load_state_dict(best_state)
        calibration = model.calibrate(
            lambda: predict_arrays(model, valid.ids, valid.mask, batch_size=config.eval.batch_size),
            valid.label)
        if calibration is not None:
            log.info("%s calibrated on the validation split: %s", config.model_name, calibration)
        verdict = collapse_verdict(config, model, valid)
        if verdict.collapsed:
            message = (f"{config.model_name}: the trained model collapsed on the validation split:"
                       f" {verdict.reason}")
            if tc.on_collapse == "fail":
                if store is not None:
                    store.remove()  # the run is over: its state resumes to the same verdict
                raise ModelCollapsed(f"{message}; nothing was written (train.on_collapse=warn"
                                     " keeps such a model, marked)")
            log.warning("%s; the model is kept and marked (train.on_collapse=warn)", message)
        meta = checkpoint_meta(model, epoch=p.best_epoch, step=p.best_step, metrics=p.best,
                               history=p.history)
        meta["collapse"] = verdict.to_dict()
        meta["calibration"] = calibration
        meta["dataset_fingerprint"] = trained_on(config.data.processed_dir)
        with atomic_directory(out_dir) as staging:
            save_checkpoint(staging, model, meta,
                            data_encoders(config.data.processed_dir, model.schema))
        if store is not None:
            store.remove()  # the model is published; nothing is left to resume
    barrier(ctx)  # no rank returns before the model exists
    return TrainResult(
        model_dir=Path(out_dir),
        best_epoch=p.best_epoch,
        best_valid=p.best,
        history=p.history,
        train_seconds=p.busy,
        samples_per_second=p.seen / max(p.busy, 1e-9),
        collapse=verdict.to_dict() if verdict is not None else None,
    )


def make_optimizer(model: WatchTimeModel, config: RunConfig) -> torch.optim.Optimizer:
    """Adam; weight decay on embedding tables only (docs/method.md, Training)."""
    tables = {id(p) for p in model.embedding_parameters()}
    decayed = [p for p in model.parameters() if id(p) in tables]
    rest = [p for p in model.parameters() if id(p) not in tables]
    groups = [
        {"params": decayed, "weight_decay": config.train.embedding_weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    # fused: one kernel per step instead of a dozen passes over every parameter (6x faster
    # on CPU with GR's embedding tables); same update rule.
    return torch.optim.Adam(groups, lr=config.train.lr, fused=True)


def learning_rate(step: int, total_steps: int, tc: Any) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total_steps``: ``train.lr``,
    or with ``train.lr_schedule=cosine`` half a cosine wave from it down towards 0. A function of
    the step alone, so a resumed run continues the same schedule."""
    if tc.lr_schedule == "constant":
        return tc.lr
    return tc.lr * 0.5 * (1.0 + math.cos(math.pi * min(step / max(total_steps, 1), 1.0)))


def validation_metrics(model: WatchTimeModel, data: SplitArrays, batch_size: int,
                       ctx: DistContext | None = None) -> dict[str, float]:
    """MAE and XAUC on ``data``; with several ranks each predicts a share and all see all."""
    if ctx is None or not ctx.distributed:
        pred = predict_arrays(model, data.ids, data.mask, batch_size=batch_size)
    else:
        bounds = split_bounds(len(data), ctx.world_size)
        lo, hi = bounds[ctx.rank]
        local = predict_arrays(model, data.ids[lo:hi], data.mask[lo:hi], batch_size=batch_size)
        pred = gather_rows(local, [b - a for a, b in bounds], ctx)
    return {"mae": metrics.mae(data.label, pred), "xauc": metrics.xauc(data.label, pred)}


def _improved(candidate: dict[str, float], best: dict[str, float] | None, metric: str) -> bool:
    if best is None:
        return True
    return candidate[metric] < best[metric] if metric == "mae" else candidate[metric] > best[metric]


def collapse_verdict(config: RunConfig, model: ZooModel,
                     valid: SplitArrays) -> collapse.CollapseVerdict:
    """The best model's verdict on the validation split against the train median (from the
    manifest's training-label statistics; the validation median when the label column is not
    the one the manifest describes)."""
    dc = config.data
    # Arrays given to fit() without a dataset have no manifest: the validation median then.
    has_manifest = (Path(dc.processed_dir) / "manifest.json").is_file()
    label = read_manifest(dc.processed_dir).get("label", {}) if has_manifest else {}
    quantiles = label.get("train_stats", {}).get("quantiles", {})
    if label.get("column", "label") == dc.label_column and "0.5" in quantiles:
        median = float(quantiles["0.5"])
    else:
        median = float(np.median(valid.label))
    pred = predict_arrays(model, valid.ids, valid.mask, batch_size=config.eval.batch_size)
    return collapse.judge(pred, valid.label, median, config.train.collapse_std_ratio)


def log_on_main(ctx: DistContext, message: str, *args: Any) -> None:
    if ctx.is_main:
        log.info(message, *args)


def _widen(t: torch.Tensor) -> torch.Tensor:
    """Targets are stored compactly; losses and lookups want int64 or float32."""
    return t.long() if not t.is_floating_point() else t.float()


def _to(t: torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    if pin:
        if not t.is_pinned():
            t = t.pin_memory()
        return t.to(device, non_blocking=True)
    return t.to(device)

"""One trainer for every model in the zoo, on one process or many (``torchrun``).

The validation split (never the test split) selects the epoch; early stopping ends a run
whose validation metric has not improved for ``patience`` epochs. The best epoch's weights are
kept in memory and the model directory is written once, atomically, when the run finishes, so
a failed run leaves no model directory that looks complete.

Input is the train split in memory (small data) or streamed from its Parquet row groups
(``train.streaming``; grmodel/data/streaming.py). The validation split is always held in memory:
it is a tenth of the data, and exact XAUC needs every prediction at once.

Under ``torchrun --nproc_per_node=N`` (grmodel/distributed.py) every rank trains the same model
on its own shard of each epoch through DistributedDataParallel; every rank scores its share of
the validation rows and the scores are computed from all of them on every rank, so the
selection and early-stopping decisions are the same everywhere. Only rank 0 logs and writes.

Resuming: given a state directory, rank 0 writes the whole training state there (weights,
optimiser, best-so-far, position in the epoch, every rank's RNG) at each epoch end and every
``train.checkpoint_every_steps`` steps; ``resume=True`` continues a killed run from it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from grmodel import collapse, metrics
from grmodel.atomic import atomic_directory
from grmodel.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    checkpoint_meta,
    data_encoders,
    save_checkpoint,
)
from grmodel.collapse import ModelCollapsed
from grmodel.config import RunConfig
from grmodel.data.streaming import ParquetStream, read_columns, split_paths
from grmodel.distributed import (
    DistContext,
    all_reduce_sum,
    autocast,
    barrier,
    distributed_context,
    gather_rows,
    rank_seed,
    resolve_device,
    split_bounds,
    wrap_for_training,
)
from grmodel.features import DatasetError, FeatureSchema, label_array, read_manifest
from grmodel.interrupts import StepInterrupts
from grmodel.models import WatchTimeModel, model_class
from grmodel.predict import predict_arrays
from grmodel.training.batches import MemoryBatches, SplitArrays, StreamBatches, check_targets, compact
from grmodel.training.records import (
    RESUME_FREE_KEYS,
    TrainResult,
    config_differences,
    finished_run,
    write_training_record,
)
from grmodel.training.state import STATE_FILE, Progress, StateStore, restore, resumed_label_state

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds third-party code that uses the global RNG
    torch.manual_seed(seed)


def build_model(config: RunConfig, schema: FeatureSchema, train: SplitArrays,
                label_state: dict[str, Any] | None = None) -> WatchTimeModel:
    """The model of ``config``; its label state is fitted on ``train`` unless given (a pipeline
    builds GR's vocabulary in a stage of its own)."""
    cls = model_class(config.model_name)
    if label_state is None:
        label_state = cls.fit_label_state(train.label, config, train.ids, schema)
    return cls(schema, config, label_state)


def fit_label_state_from_columns(config: RunConfig, schema: FeatureSchema,
                                 paths: list[Path]) -> dict[str, Any]:
    """The label state from the label column (and the fields the model names) only: what the
    streaming trainer uses, so fitting a vocabulary never loads the feature matrix."""
    cls = model_class(config.model_name)
    dc = config.data
    fields = list(cls.label_state_fields(config))
    missing = [name for name in fields if name not in schema.names]
    if missing:
        raise DatasetError(f"{paths[0]}: model {config.model_name!r} fits its label state on"
                           f" field(s) {missing}, which are not in the feature schema (fields:"
                           f" {schema.names}); set head.duration_field to a field of the dataset")
    frame = read_columns(paths, [dc.label_column, *fields], dc.max_train_rows)
    source = str(paths[0])
    labels = label_array(frame, dc.label_column, source)
    if not fields:
        return cls.fit_label_state(labels, config)
    sub = FeatureSchema(tuple(schema.fields[schema.names.index(name)] for name in fields))
    ids, _ = sub.arrays(frame, source)
    return cls.fit_label_state(labels, config, ids, sub)


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


def default_state_dir(out_dir: str | Path) -> Path:
    """Where ``grmodel train`` keeps the resumable training state: beside the model directory."""
    out = Path(out_dir)
    return out.with_name(f"{out.name}.state")


def train_model(
    config: RunConfig,
    out_dir: str | Path,
    label_state: dict[str, Any] | None = None,
    targets: dict[str, np.ndarray] | None = None,
    *,
    state_dir: str | Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``config.model_name`` on ``config.data.processed_dir``; write the best model.

    ``label_state`` and ``targets`` (e.g. GR's vocabulary and encoded token sequences, one row
    per training row) come from earlier pipeline stages; by default they are derived here.
    ``state_dir`` turns on resumable training states; ``resume`` continues from the one there
    (or starts afresh when there is none; a finished model of the same config is reused).
    ``on_epoch`` is called with each epoch's history record as it ends (on rank 0), e.g. to
    track the curves live. Launched by torchrun, this process joins the process group for the run.
    """
    dc, tc = config.data, config.train
    with distributed_context(tc.device) as ctx:
        if resume and state_dir is not None:
            finished = _finished_run(config, out_dir, state_dir, ctx)
            if finished is not None:
                return finished
        elif state_dir is not None and (Path(state_dir) / STATE_FILE).is_file():
            _info(ctx, "%s holds the state of an unfinished run: starting afresh (and replacing"
                  " it); pass --resume to continue that run instead", state_dir)
        manifest = read_manifest(dc.processed_dir)
        schema = FeatureSchema.from_dict(manifest["features"])
        valid = SplitArrays.load(dc.processed_dir, "valid", schema, dc.label_column, dc.max_eval_rows)
        if tc.streaming:
            return fit_streaming(config, schema, valid, out_dir, label_state, targets,
                                 state_dir=state_dir, resume=resume, ctx=ctx, on_epoch=on_epoch)
        train = SplitArrays.load(dc.processed_dir, "train", schema, dc.label_column, dc.max_train_rows)
        _check_sizes(dc.processed_dir, len(train), len(valid))
        return fit(config, schema, train, valid, out_dir, label_state, targets,
                   state_dir=state_dir, resume=resume, ctx=ctx, on_epoch=on_epoch)


def fit(
    config: RunConfig,
    schema: FeatureSchema,
    train: SplitArrays,
    valid: SplitArrays,
    out_dir: str | Path,
    label_state: dict[str, Any] | None = None,
    targets: dict[str, np.ndarray] | None = None,
    *,
    state_dir: str | Path | None = None,
    resume: bool = False,
    ctx: DistContext | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train on in-memory arrays (each rank holds the split and trains on its share)."""
    tc = config.train
    ctx, store, saved, label_state = _start(config, label_state, state_dir, resume, ctx)
    model = build_model(config, schema, train, label_state).to(ctx.device)
    if targets is None:
        targets = model.targets(train.label)
    check_targets(targets, model.targets(train.label[:1]), len(train), config.model_name)
    source = MemoryBatches(train, _tensors(targets), tc.batch_size, tc.seed, ctx)
    with StepInterrupts() as interrupts:
        return _train_loop(config, model, source, valid, out_dir, ctx, store, saved, on_epoch,
                           interrupts)


def fit_streaming(
    config: RunConfig,
    schema: FeatureSchema,
    valid: SplitArrays,
    out_dir: str | Path,
    label_state: dict[str, Any] | None = None,
    targets: dict[str, np.ndarray] | None = None,
    *,
    state_dir: str | Path | None = None,
    resume: bool = False,
    ctx: DistContext | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train on the train split streamed from its Parquet row groups (``train.streaming``)."""
    dc, tc = config.data, config.train
    ctx, store, saved, label_state = _start(config, label_state, state_dir, resume, ctx)
    paths = split_paths(dc.processed_dir, "train")
    if label_state is None:
        label_state = fit_label_state_from_columns(config, schema, paths)
    model = model_class(config.model_name)(schema, config, label_state).to(ctx.device)
    stream = ParquetStream(
        paths, schema, dc.label_column, tc.batch_size, seed=tc.seed,
        shuffle_buffer=tc.shuffle_buffer, rank=ctx.rank, world_size=ctx.world_size,
        max_rows=dc.max_train_rows, targets=None if targets is not None else model.targets,
    )
    _check_sizes(dc.processed_dir, stream.total_rows, len(valid))
    extra: dict[str, torch.Tensor] = {}
    if targets is not None:
        # Precomputed targets are looked up by each streamed row's index in the split.
        check_targets(targets, model.targets(valid.label[:1]), stream.total_rows, config.model_name)
        extra = _tensors(targets)
    source = StreamBatches(stream, tc.loader_workers, ctx, extra, tc.seed)
    with StepInterrupts() as interrupts:
        return _train_loop(config, model, source, valid, out_dir, ctx, store, saved, on_epoch,
                           interrupts)


def _start(config: RunConfig, label_state: dict[str, Any] | None, state_dir: str | Path | None,
           resume: bool, ctx: DistContext | None
           ) -> tuple[DistContext, StateStore | None, dict[str, Any] | None, dict[str, Any] | None]:
    """What both entry points do first: the context, the state store and the saved state (with
    ``resume``), threads and seeds, and the label state (the saved run's, when resuming)."""
    ctx = ctx or DistContext(device=resolve_device(config.train.device))
    store = StateStore(state_dir) if state_dir is not None else None
    saved = store.load(config, ctx) if store is not None and resume else None
    _setup(config.train)
    return ctx, store, saved, resumed_label_state(saved, label_state, store)


def _tensors(targets: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(compact(v)) for k, v in targets.items()}


def train_or_resume(
    config: RunConfig,
    model_dir: Path,
    fingerprint: str,
    label_state: dict[str, Any] | None = None,
    targets: dict[str, np.ndarray] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``model_dir`` (or reuse a finished identical run); its run record.

    ``label_state``, ``targets`` and ``on_epoch`` pass through to :func:`train_model`.
    """
    record = finished_run(model_dir, config, fingerprint)
    if record is not None:
        log.info("reusing the finished run in %s", model_dir)
        return {**record, "resumed": True}
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = train_model(config, model_dir, label_state, targets, on_epoch=on_epoch)
    record = write_training_record(result, config, fingerprint, time.perf_counter() - start)
    return {**record, "resumed": False}


# ----------------------------------------------------------------------------- the loop


def _train_loop(config: RunConfig, model: WatchTimeModel, source: Any, valid: SplitArrays,
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
        _info(ctx, "resuming from step %d (epoch %d, batch %d) of %s", p.step, p.epoch, p.batch,
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
        bar = _progress(config.model_name, batches_per_epoch, epoch, tc.epochs,
                        tc.progress, ctx.is_main, first)
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
                raise FloatingPointError(
                    f"{config.model_name}: loss became {loss.item()} at step {p.step} (epoch"
                    f" {epoch}, rank {ctx.rank}); lower train.lr or check the labels"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
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
        _info(ctx, "%s epoch %d: loss %.4f valid MAE %.4f XAUC %.4f (%.0f samples/s)",
              config.model_name, epoch, record["train_loss"], scores["mae"], scores["xauc"],
              record["samples_per_second"])
        if _improved(scores, p.best, tc.select_metric):
            p.best, p.best_epoch, p.best_step, p.stale = scores, epoch, p.step, 0
            if ctx.is_main:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            p.stale += 1
            if p.stale >= tc.patience:
                _info(ctx, "early stop: no %s gain for %d epochs", tc.select_metric, p.stale)
                p.stopped = True
        p.epoch, p.batch, p.running, p.count = epoch + 1, 0, 0.0, 0
        if store is not None:
            store.save(config, model, optimizer, best_state, p, ctx)
        interrupts.check()

    if p.best is None:
        raise RuntimeError(f"{config.model_name}: no epoch finished (total_steps={total_steps})")
    verdict = None
    if ctx.is_main:
        model.load_state_dict(best_state)
        verdict = _collapse_verdict(config, model, valid)
        if verdict.collapsed:
            message = (f"{config.model_name}: the trained model collapsed on the validation split:"
                       f" {verdict.reason}")
            if tc.on_collapse == "fail":
                raise ModelCollapsed(f"{message}; nothing was written (train.on_collapse=warn"
                                     " keeps such a model, marked)")
            log.warning("%s; the model is kept and marked (train.on_collapse=warn)", message)
        meta = checkpoint_meta(model, epoch=p.best_epoch, step=p.best_step, metrics=p.best,
                               history=p.history)
        meta["collapse"] = verdict.to_dict()
        meta["manifest_sha256"] = manifest_digest(config.data.processed_dir)
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


def _finished_run(config: RunConfig, out_dir: str | Path, state_dir: str | Path,
                  ctx: DistContext) -> TrainResult | None:
    """With ``resume``: the already published model of this config, when no state is left
    (a restarted job whose training had finished)."""
    if (Path(state_dir) / STATE_FILE).is_file():
        return None
    result = finished_model(config, out_dir)
    if result is not None:
        _info(ctx, "%s already holds the finished model of this config; not training again", out_dir)
    return result


def manifest_digest(processed_dir: str | Path) -> str | None:
    """sha256 of a processed dataset's manifest (it records every source file's sha256 and the
    ingest options): which data a model was trained on. None for arrays given to :func:`fit`
    without a dataset."""
    path = Path(processed_dir) / "manifest.json"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def finished_model(config: RunConfig, out_dir: str | Path) -> TrainResult | None:
    """The finished model of ``config`` on the same dataset in ``out_dir``, else None."""
    out = Path(out_dir)
    if not ((out / WEIGHTS_FILE).is_file() and (out / META_FILE).is_file()):
        return None
    try:
        meta = json.loads((out / META_FILE).read_text())
        same = (not config_differences(meta["config"], config.to_dict(), RESUME_FREE_KEYS)
                and meta.get("manifest_sha256") == manifest_digest(config.data.processed_dir))
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or of another version
        return None
    if not same:
        return None
    return TrainResult(model_dir=out, best_epoch=meta["epoch"], best_valid=meta["best_valid"],
                       history=meta["history"], collapse=meta.get("collapse"))


def _collapse_verdict(config: RunConfig, model: WatchTimeModel,
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


# ------------------------------------------------------------------------------- helpers


def _setup(tc: Any) -> None:
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    seed_everything(tc.seed)


def _check_sizes(processed_dir: str, train_rows: int, valid_rows: int) -> None:
    if train_rows == 0 or valid_rows < 2:
        raise ValueError(
            f"{processed_dir}: train has {train_rows} rows and valid {valid_rows}"
            " (rule: training needs train rows and at least 2 validation rows)"
        )


def _info(ctx: DistContext, message: str, *args: Any) -> None:
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


def _progress(model: str, total: int, epoch: int, epochs: int, bar: bool, is_main: bool,
              done: int = 0):
    """A terminal bar (``train.progress``), or event lines when a runner reads the output."""
    from grmodel import progress

    if not is_main:
        return None
    if progress.events_enabled():
        return progress.EpochEvents(model, total, epoch, epochs, done)
    if not bar:
        return None
    return tqdm(total=total, initial=done, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                leave=False)

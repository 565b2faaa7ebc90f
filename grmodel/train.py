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

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grmodel import __version__, metrics
from grmodel.atomic import atomic_directory, atomic_file, write_json_atomic
from grmodel.checkpoint import META_FILE, WEIGHTS_FILE, checkpoint_meta, save_checkpoint
from grmodel.config import RunConfig
from grmodel.distributed import (
    DistContext,
    all_gather_tensor,
    all_reduce_sum,
    barrier,
    distributed_context,
    gather_rows,
    rank_seed,
    split_bounds,
    weights_digest,
    wrap_for_training,
)
from grmodel.features import DatasetError, FeatureSchema, label_array, read_manifest
from grmodel.models import WatchTimeModel, model_class
from grmodel.predict import autocast, predict_arrays, resolve_device

log = logging.getLogger(__name__)

STATE_FORMAT = "grmodel.train_state/1"
STATE_FILE = "state.pt"
STATE_SUMMARY = "state.json"
# Settings that may change between a killed run and its resumption: they do not change results.
RESUME_FREE_KEYS = frozenset({"train.progress", "train.num_threads", "train.loader_workers",
                              "train.checkpoint_every_steps", "train.device"})
# Test/debug hook: a directory where every rank writes what it trained on (rows per epoch, final
# weights digest); never set in production.
AUDIT_ENV = "GRMODEL_TRAIN_AUDIT_DIR"


@dataclass
class SplitArrays:
    """A split held in memory as the arrays a model consumes."""

    ids: np.ndarray  # int32 [N, F]
    mask: np.ndarray  # float32 [N, F]
    label: np.ndarray  # float64 [N]

    @classmethod
    def load(cls, processed_dir: str | Path, split: str, schema: FeatureSchema, label_column: str,
             max_rows: int | None = None) -> SplitArrays:
        from grmodel.data.streaming import read_columns, split_paths

        paths = split_paths(processed_dir, split)
        # Only the columns a model consumes: ids, raw ids, timestamps and oracles stay on disk.
        frame = read_columns(paths, [*schema.names, label_column], max_rows)
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
    samples_per_second: float = 0.0  # over all ranks


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
    from grmodel.data.streaming import read_columns

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
) -> TrainResult:
    """Train ``config.model_name`` on ``config.data.processed_dir``; write the best model.

    ``label_state`` and ``targets`` (e.g. GR's vocabulary and encoded token sequences, one row
    per training row) come from earlier pipeline stages; by default they are derived here.
    ``state_dir`` turns on resumable training states; ``resume`` continues from the one there
    (or starts afresh when there is none; a finished model of the same config is reused).
    Launched by torchrun, this process joins the process group for the run.
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
                                 state_dir=state_dir, resume=resume, ctx=ctx)
        train = SplitArrays.load(dc.processed_dir, "train", schema, dc.label_column, dc.max_train_rows)
        _check_sizes(dc.processed_dir, len(train), len(valid))
        return fit(config, schema, train, valid, out_dir, label_state, targets,
                   state_dir=state_dir, resume=resume, ctx=ctx)


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
) -> TrainResult:
    """Train on in-memory arrays (each rank holds the split and trains on its share)."""
    tc = config.train
    ctx = ctx or DistContext(device=resolve_device(tc.device))
    store = _StateStore(state_dir) if state_dir is not None else None
    saved = store.load(config, ctx) if store is not None and resume else None
    _setup(tc)
    label_state = _resumed_label_state(saved, label_state, store)
    model = build_model(config, schema, train, label_state).to(ctx.device)
    if targets is None:
        targets = model.targets(train.label)
    _check_targets(targets, model.targets(train.label[:1]), len(train), config.model_name)
    extra = {k: torch.from_numpy(_compact(v)) for k, v in targets.items()}
    source = _MemoryBatches(train, extra, tc.batch_size, tc.seed, ctx)
    return _train_loop(config, model, source, valid, out_dir, ctx, store, saved)


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
) -> TrainResult:
    """Train on the train split streamed from its Parquet row groups (``train.streaming``)."""
    from grmodel.data.streaming import ParquetStream, split_paths

    dc, tc = config.data, config.train
    ctx = ctx or DistContext(device=resolve_device(tc.device))
    store = _StateStore(state_dir) if state_dir is not None else None
    saved = store.load(config, ctx) if store is not None and resume else None
    _setup(tc)
    paths = split_paths(dc.processed_dir, "train")
    label_state = _resumed_label_state(saved, label_state, store)
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
        _check_targets(targets, model.targets(valid.label[:1]), stream.total_rows, config.model_name)
        extra = {k: torch.from_numpy(_compact(v)) for k, v in targets.items()}
    source = _StreamBatches(stream, tc.loader_workers, ctx, extra, tc.seed)
    return _train_loop(config, model, source, valid, out_dir, ctx, store, saved)


# -------------------------------------------------------------------------------- batches


class _MemoryBatches:
    """Each epoch: one permutation of all rows (the same on every rank), dealt out to the ranks
    like cards, so their shares are disjoint; a share is ``N // world_size`` rows."""

    def __init__(self, train: SplitArrays, extra: dict[str, torch.Tensor], batch_size: int,
                 seed: int, ctx: DistContext):
        self.ids = torch.from_numpy(train.ids)
        self.mask = torch.from_numpy(train.mask)
        self.label = torch.from_numpy(train.label.astype(np.float32))
        self.extra = extra
        self.batch_size = batch_size
        self.ctx = ctx
        self.rows = len(train) if not ctx.distributed else len(train) // ctx.world_size
        self.batches_per_epoch = math.ceil(self.rows / batch_size)
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)
        self._epoch = -1
        self._order = torch.empty(0, dtype=torch.long)

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's rows for ``epoch``: the run's ``epoch``-th permutation, rebuilt on resume."""
        if epoch < self._epoch:
            self._generator, self._epoch = torch.Generator().manual_seed(self.seed), -1
        while self._epoch < epoch:
            self._order = torch.randperm(len(self.label), generator=self._generator)
            self._epoch += 1
        if not self.ctx.distributed:
            return self._order
        world, rank = self.ctx.world_size, self.ctx.rank
        return self._order[rank : self.rows * world : world]

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        order = self.order(epoch)
        for b in range(skip, self.batches_per_epoch):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            batch = {"ids": self.ids[rows], "mask": self.mask[rows], "label": self.label[rows],
                     "row": rows}
            batch.update({k: v[rows] for k, v in self.extra.items()})
            yield batch


class _StreamBatches:
    """A ParquetStream through a DataLoader (workers, pinned memory on CUDA); every rank stops
    at the same number of batches per epoch."""

    def __init__(self, stream: Any, workers: int, ctx: DistContext, extra: dict[str, torch.Tensor],
                 seed: int):
        from torch.utils.data import DataLoader

        self.stream = stream
        self.extra = extra
        self.batches_per_epoch = min(stream.batches_per_rank(workers))
        if self.batches_per_epoch == 0:
            raise ValueError(f"streaming input: {stream.total_rows} train rows cannot feed"
                             f" {ctx.world_size} ranks x {max(workers, 1)} loader workers"
                             " (rule: at least one row per worker)")
        # Worker seeds come from this generator, not the global RNG (kept for dropout/CLEM).
        self.loader = DataLoader(stream, batch_size=None, num_workers=workers,
                                 pin_memory=ctx.device.type == "cuda", persistent_workers=False,
                                 generator=torch.Generator().manual_seed(seed))

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        self.stream.set_epoch(epoch)
        for b, batch in enumerate(self.loader):
            if b >= self.batches_per_epoch:
                break
            if b < skip:
                continue
            batch.update({k: v[batch["row"]] for k, v in self.extra.items()})
            yield batch


# ----------------------------------------------------------------------------- the loop


@dataclass
class _Progress:
    """Everything besides tensors that a resumed run needs to continue where it stopped."""

    epoch: int = 0
    batch: int = 0  # batches of ``epoch`` already trained
    step: int = 0
    best: dict[str, float] | None = None
    best_epoch: int = -1
    best_step: int = 0
    stale: int = 0
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    running: float = 0.0  # loss sum and samples of the unfinished epoch, over all ranks
    count: int = 0
    seen: int = 0
    busy: float = 0.0


def _train_loop(config: RunConfig, model: WatchTimeModel, source: Any, valid: SplitArrays,
                out_dir: str | Path, ctx: DistContext, store: _StateStore | None,
                saved: dict[str, Any] | None) -> TrainResult:
    tc = config.train
    module = wrap_for_training(model, ctx)
    optimizer = make_optimizer(model, config)
    batches_per_epoch = source.batches_per_epoch
    total_steps = tc.epochs * batches_per_epoch
    if tc.max_steps is not None:
        total_steps = min(total_steps, tc.max_steps)

    p = _Progress()
    best_state: dict[str, torch.Tensor] = {}
    if saved is not None:
        p, best_state = _restore(saved, model, optimizer, ctx)
        _info(ctx, "resuming from step %d (epoch %d, batch %d) of %s", p.step, p.epoch, p.batch,
              store.directory if store else "?")
    elif ctx.rank > 0:
        # Same initial weights everywhere (seeded before the model was built); each rank then
        # draws its own dropout and CLEM sampling stream.
        torch.manual_seed(rank_seed(tc.seed, ctx.rank))
    audit = _Audit.from_env(ctx, p.step)
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
        bar = _progress(batches_per_epoch, epoch, tc.epochs, tc.progress and ctx.is_main, first)
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
            audit.rows(epoch, rows)
            if bar is not None:
                elapsed = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(loss=f"{running / count:.4f}", sps=f"{count / max(elapsed, 1e-9):.0f}")
            every = tc.checkpoint_every_steps
            if (store is not None and every and p.step % every == 0 and b < batches_per_epoch
                    and p.step < total_steps):
                p.epoch, p.batch = epoch, b
                summed = all_reduce_sum([running, count], ctx)
                p.running, p.count = summed[0], int(summed[1])
                store.save(config, model, optimizer, best_state, p, ctx)
                # The epoch's sums so far now live on rank 0 (as they would after a resume).
                running, count = (p.running, p.count) if ctx.is_main else (0.0, 0)
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

    if p.best is None:
        raise RuntimeError(f"{config.model_name}: no epoch finished (total_steps={total_steps})")
    audit.finish(model, p.step)
    if ctx.is_main:
        model.load_state_dict(best_state)
        meta = checkpoint_meta(model, epoch=p.best_epoch, step=p.best_step, metrics=p.best,
                               history=p.history)
        with atomic_directory(out_dir) as staging:
            save_checkpoint(staging, model, meta)
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
    )


# ------------------------------------------------------------------------- resumable state


class _StateStore:
    """``state.pt`` (tensors, read with ``weights_only=True``) and ``state.json`` (a summary
    for people and tools) in one directory; written by rank 0 only, each file atomically."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE

    def save(self, config: RunConfig, model: WatchTimeModel, optimizer: torch.optim.Optimizer,
             best_state: dict[str, torch.Tensor], p: _Progress, ctx: DistContext) -> None:
        # Every rank's RNG, so each resumes its own dropout / CLEM stream (a collective call).
        rng = torch.stack(all_gather_tensor(torch.get_rng_state(), ctx))
        cuda_rng = torch.empty(0, dtype=torch.uint8)
        if ctx.device.type == "cuda":
            cuda_rng = torch.stack(all_gather_tensor(torch.cuda.get_rng_state(ctx.device), ctx))
        if not ctx.is_main:
            return
        meta = {
            "format": STATE_FORMAT,
            "config": config.to_dict(),
            "label_state": model.label_state,
            "world_size": ctx.world_size,
            "progress": {k: v for k, v in vars(p).items()},
            "grmodel_version": __version__,
            "saved_at": time.time(),
        }
        payload = {
            "meta": json.dumps(meta),
            "model": _cpu(model.state_dict()),
            "optimizer": optimizer.state_dict(),
            "best_model": _cpu(best_state),
            "rng": rng,
            "cuda_rng": cuda_rng,
        }
        with atomic_file(self.path) as tmp:
            torch.save(payload, tmp)
        summary = {k: meta[k] for k in ("format", "world_size", "grmodel_version", "saved_at")}
        summary.update({k: getattr(p, k) for k in ("epoch", "batch", "step", "best", "stopped")})
        write_json_atomic(self.directory / STATE_SUMMARY, summary)

    def load(self, config: RunConfig, ctx: DistContext) -> dict[str, Any] | None:
        """The saved state of this run, or None when there is none (every rank reads it: the
        state directory must be on storage that all ranks see)."""
        payload = self._read(config, ctx)
        step = -1 if payload is None else int(payload["meta"]["progress"]["step"])
        steps = [int(t.item()) for t in all_gather_tensor(torch.tensor([step]), ctx)]
        if len(set(steps)) > 1:
            raise ValueError(f"{self.path}: the ranks see different training states (steps"
                             f" {steps}, -1 = none); rule: the state directory must be on storage"
                             " shared by every rank (a ReadWriteMany volume across nodes)")
        return payload

    def _read(self, config: RunConfig, ctx: DistContext) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
            meta = json.loads(payload["meta"])
        except Exception as exc:  # a foreign or damaged file: one clear message
            raise ValueError(f"{self.path}: not a readable grmodel training state ({exc})") from None
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"{self.path}: format {meta.get('format')!r}, expected {STATE_FORMAT!r}")
        diffs = config_differences(RunConfig.from_dict(meta["config"]).to_dict(), config.to_dict())
        if diffs:
            raise ValueError(f"{self.path}: the saved state is of another config (differs in"
                             f" {diffs[:6]}); rule: --resume continues the same run only: remove"
                             f" {self.directory} to start afresh")
        if meta["world_size"] != ctx.world_size:
            raise ValueError(f"{self.path}: saved by {meta['world_size']} processes, resumed by"
                             f" {ctx.world_size} (rule: resume with the same --nproc_per_node and"
                             " nodes: each rank's data shard depends on the world size)")
        payload["meta"] = meta
        return payload

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, ignoring :data:`RESUME_FREE_KEYS`."""
    keys = sorted(set(saved) | set(current))
    out: list[str] = []
    for key in keys:
        path = f"{prefix}{key}"
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and path != "head":
            out.extend(config_differences(a, b, f"{path}."))
        elif a != b and path not in RESUME_FREE_KEYS:
            out.append(path)
    return out


def _restore(saved: dict[str, Any], model: WatchTimeModel, optimizer: torch.optim.Optimizer,
             ctx: DistContext) -> tuple[_Progress, dict[str, torch.Tensor]]:
    meta = saved["meta"]
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    # clone(): set_rng_state reads a row of the stacked states wrongly (a crash) when given a view.
    torch.set_rng_state(saved["rng"][ctx.rank].clone())
    if ctx.device.type == "cuda" and len(saved["cuda_rng"]):
        torch.cuda.set_rng_state(saved["cuda_rng"][ctx.rank].clone(), ctx.device)
    best = {k: v.to(ctx.device) for k, v in saved["best_model"].items()} if ctx.is_main else {}
    return _Progress(**meta["progress"]), best


def _resumed_label_state(saved: dict[str, Any] | None, given: dict[str, Any] | None,
                         store: _StateStore | None) -> dict[str, Any] | None:
    if saved is None:
        return given
    state = saved["meta"]["label_state"]
    if given is not None and json.loads(json.dumps(given)) != state:
        raise ValueError(f"{store.path if store else 'state'}: the given label state differs from"
                         " the one the saved run trained with (rule: resume the same run only)")
    return state


def _finished_run(config: RunConfig, out_dir: str | Path, state_dir: str | Path,
                  ctx: DistContext) -> TrainResult | None:
    """With ``resume``: the already published model of this config, when no state is left
    (a restarted job whose training had finished)."""
    out = Path(out_dir)
    if (Path(state_dir) / STATE_FILE).is_file() or not (out / WEIGHTS_FILE).is_file():
        return None
    meta = json.loads((out / META_FILE).read_text())
    if config_differences(RunConfig.from_dict(meta["config"]).to_dict(), config.to_dict()):
        return None
    _info(ctx, "%s already holds the finished model of this config; not training again", out)
    return TrainResult(model_dir=out, best_epoch=meta["epoch"], best_valid=meta["best_valid"],
                       history=meta["history"])


class _Audit:
    """What each rank trained on, written to ``$GRMODEL_TRAIN_AUDIT_DIR/rank<R>.json`` at the end
    (tests check disjoint shards, identical weights and resumption with it)."""

    def __init__(self, directory: Path | None, ctx: DistContext, start_step: int):
        self.directory = directory
        self.ctx = ctx
        self.start_step = start_step
        self.epochs: dict[int, list[int]] = {}

    @classmethod
    def from_env(cls, ctx: DistContext, start_step: int) -> _Audit:
        raw = os.environ.get(AUDIT_ENV)
        return cls(Path(raw) if raw else None, ctx, start_step)

    def rows(self, epoch: int, rows: torch.Tensor) -> None:
        if self.directory is not None:
            self.epochs.setdefault(epoch, []).extend(rows.tolist())

    def finish(self, model: WatchTimeModel, step: int) -> None:
        if self.directory is None:
            return
        write_json_atomic(self.directory / f"rank{self.ctx.rank}.json", {
            "rank": self.ctx.rank,
            "world_size": self.ctx.world_size,
            "start_step": self.start_step,
            "end_step": step,
            "rows": {str(e): sorted(r) for e, r in self.epochs.items()},
            "final_weights_sha256": weights_digest(model),
        })


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


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


def _check_targets(targets: dict[str, np.ndarray], expected: dict[str, np.ndarray], rows: int,
                   model_name: str) -> None:
    """Given targets must be the ones the model would derive: same names, one per train row."""
    if sorted(targets) != sorted(expected):
        raise ValueError(f"{model_name}: targets {sorted(targets)} given, the model trains on"
                         f" {sorted(expected)}")
    for name, values in targets.items():
        want = expected[name].shape[1:]
        if len(values) != rows or values.shape[1:] != want:
            raise ValueError(f"{model_name}: target {name!r} has shape {values.shape}; expected"
                             f" ({rows}, {', '.join(map(str, want))}) (one per training row)")


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
        if not t.is_pinned():
            t = t.pin_memory()
        return t.to(device, non_blocking=True)
    return t.to(device)


def _progress(total: int, epoch: int, epochs: int, enabled: bool, done: int = 0):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                leave=False)

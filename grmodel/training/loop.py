"""One trainer for every model in the zoo, on one process or many (``torchrun``): its entry
points (the epoch loop itself is epochs.py).

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

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grmodel.config import RunConfig
from grmodel.data.streaming import ParquetStream, read_columns, split_paths
from grmodel.distributed import DistContext, distributed_context, launch_env, resolve_device
from grmodel.features import DatasetError, FeatureSchema, label_array, read_manifest
from grmodel.interrupts import StepInterrupts
from grmodel.models import WatchTimeModel, is_array_model, model_class
from grmodel.training.arrays import check_array_config, fit_array_model
from grmodel.training.batches import MemoryBatches, SplitArrays, StreamBatches, check_targets, compact
from grmodel.training.epochs import log_on_main, run_epochs
from grmodel.training.records import (
    TrainResult,
    finished_model,
    finished_run,
    write_training_record,
)
from grmodel.training.state import STATE_FILE, StateStore, resumed_label_state

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
    if is_array_model(config.model_name):
        return _train_array_model(config, out_dir, label_state, resume)
    with distributed_context(tc.device) as ctx:
        if resume and state_dir is not None:
            finished = _finished_run(config, out_dir, state_dir, ctx)
            if finished is not None:
                return finished
        elif state_dir is not None and (Path(state_dir) / STATE_FILE).is_file():
            log_on_main(ctx, "%s holds the state of an unfinished run: starting afresh (and"
                        " replacing it); pass --resume to continue that run instead", state_dir)
        manifest = read_manifest(dc.processed_dir)
        schema = FeatureSchema.from_dict(manifest["features"])
        valid = SplitArrays.load(dc.processed_dir, "valid", schema, dc.label_column, dc.max_eval_rows)
        train = None  # streamed
        if not tc.streaming:
            train = SplitArrays.load(dc.processed_dir, "train", schema, dc.label_column,
                                     dc.max_train_rows)
            _check_sizes(dc.processed_dir, len(train), len(valid))
        return fit(config, schema, train, valid, out_dir, label_state, targets,
                   state_dir=state_dir, resume=resume, ctx=ctx, on_epoch=on_epoch)


def _train_array_model(config: RunConfig, out_dir: str | Path, label_state: dict[str, Any] | None,
                       resume: bool) -> TrainResult:
    """An array model (the GBDT): one fit on the splits in memory, no resumable state (a killed
    fit starts again); with ``resume`` a finished model of the same config is reused."""
    dc = config.data
    launched = launch_env()
    check_array_config(config, launched[1] if launched else 1)
    if resume:
        finished = finished_model(config, out_dir)
        if finished is not None:
            log.info("%s already holds the finished model of this config; not training again",
                     out_dir)
            return finished
    schema = FeatureSchema.from_dict(read_manifest(dc.processed_dir)["features"])
    valid = SplitArrays.load(dc.processed_dir, "valid", schema, dc.label_column, dc.max_eval_rows)
    train = SplitArrays.load(dc.processed_dir, "train", schema, dc.label_column, dc.max_train_rows)
    _check_sizes(dc.processed_dir, len(train), len(valid))
    seed_everything(config.train.seed)
    return fit_array_model(config, schema, train, valid, out_dir, label_state)


def fit(
    config: RunConfig,
    schema: FeatureSchema,
    train: SplitArrays | None,
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
    """Train on ``train`` in memory (each rank holds the split and trains on its share) or, with
    ``train=None``, on the train split streamed from its Parquet row groups (``train.streaming``)."""
    ctx, store, saved, label_state = _start(config, label_state, state_dir, resume, ctx, out_dir)
    if train is None:
        model, source = _streamed(config, schema, valid, label_state, targets, ctx)
    else:
        model, source = _in_memory(config, schema, train, label_state, targets, ctx)
    with StepInterrupts() as interrupts:
        return run_epochs(config, model, source, valid, out_dir, ctx, store, saved, on_epoch,
                          interrupts)


def _in_memory(config: RunConfig, schema: FeatureSchema, train: SplitArrays,
               label_state: dict[str, Any] | None, targets: dict[str, np.ndarray] | None,
               ctx: DistContext) -> tuple[WatchTimeModel, MemoryBatches]:
    tc = config.train
    model = build_model(config, schema, train, label_state).to(ctx.device)
    if targets is None:
        targets = model.targets(train.label)
    check_targets(targets, model.targets(train.label[:1]), len(train), config.model_name)
    return model, MemoryBatches(train, _tensors(targets), tc.batch_size, tc.seed, ctx)


def _streamed(config: RunConfig, schema: FeatureSchema, valid: SplitArrays,
              label_state: dict[str, Any] | None, targets: dict[str, np.ndarray] | None,
              ctx: DistContext) -> tuple[WatchTimeModel, StreamBatches]:
    dc, tc = config.data, config.train
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
    return model, StreamBatches(stream, tc.loader_workers, ctx, extra, tc.seed)


def _start(config: RunConfig, label_state: dict[str, Any] | None, state_dir: str | Path | None,
           resume: bool, ctx: DistContext | None, out_dir: str | Path
           ) -> tuple[DistContext, StateStore | None, dict[str, Any] | None, dict[str, Any] | None]:
    """What both entry points do first: the context, the state store (refused unless it is
    grmodel's to write and remove) and the saved state (with ``resume``), threads and seeds,
    and the label state (the saved run's, when resuming)."""
    ctx = ctx or DistContext(device=resolve_device(config.train.device))
    store = StateStore(state_dir) if state_dir is not None else None
    if store is not None:
        store.claim(inputs=[config.data.processed_dir, out_dir])
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


def _finished_run(config: RunConfig, out_dir: str | Path, state_dir: str | Path,
                  ctx: DistContext) -> TrainResult | None:
    """With ``resume``: the already published model of this config, when no state is left
    (a restarted job whose training had finished)."""
    if (Path(state_dir) / STATE_FILE).is_file():
        return None
    result = finished_model(config, out_dir)
    if result is not None:
        log_on_main(ctx, "%s already holds the finished model of this config; not training again",
                    out_dir)
    return result


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

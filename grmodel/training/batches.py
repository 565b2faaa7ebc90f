"""What the trainer iterates over: a split held in memory, and the two batch sources.

:class:`MemoryBatches` deals one seeded permutation of an in-memory split out to the ranks;
:class:`StreamBatches` reads the train split from its Parquet row groups
(``train.streaming``; grmodel/data/streaming.py). Both yield dicts of tensors with a ``row``
entry (each row's index in the split), through which precomputed targets are looked up.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from grmodel.data.streaming import read_columns, split_paths
from grmodel.distributed import DistContext
from grmodel.features import FeatureSchema, label_array


@dataclass
class SplitArrays:
    """A split held in memory as the arrays a model consumes."""

    ids: np.ndarray  # int32 [N, F]
    mask: np.ndarray  # float32 [N, F]
    label: np.ndarray  # float64 [N]

    @classmethod
    def load(cls, processed_dir: str | Path, split: str, schema: FeatureSchema, label_column: str,
             max_rows: int | None = None) -> SplitArrays:
        paths = split_paths(processed_dir, split)
        # Only the columns a model consumes: ids, raw ids, timestamps and oracles stay on disk.
        frame = read_columns(paths, [*schema.names, label_column], max_rows)
        source = str(Path(processed_dir) / f"{split}.parquet")
        ids, mask = schema.arrays(frame, source)
        return cls(ids.astype(np.int32), mask, label_array(frame, label_column, source))

    def __len__(self) -> int:
        return len(self.label)



class MemoryBatches:
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



class StreamBatches:
    """A ParquetStream through a DataLoader (workers, pinned memory on CUDA); every rank stops
    at the same number of batches per epoch."""

    def __init__(self, stream: Any, workers: int, ctx: DistContext, extra: dict[str, torch.Tensor],
                 seed: int):
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



def check_targets(targets: dict[str, np.ndarray], expected: dict[str, np.ndarray], rows: int,
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


def compact(array: np.ndarray) -> np.ndarray:
    """Store integer targets (token ids, classes) as int32: half the memory of int64."""
    if np.issubdtype(array.dtype, np.integer) and array.size and abs(array).max() < 2**31:
        return array.astype(np.int32)
    return array



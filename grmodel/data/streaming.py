"""Streaming training input: Parquet row groups → shuffled batches, so data need not fit in memory.

:class:`ParquetStream` is an ``IterableDataset`` over one split's Parquet file(s). Each epoch:

1. the split's row groups are put in an order drawn from ``(seed, epoch)`` (the same on every
   rank), and that sequence of rows is cut into ``world_size × workers`` contiguous shards whose
   sizes differ by at most one row (:func:`shard_pieces`). A rank's DataLoader worker reads only
   its own shard: every row is read by exactly one worker of one rank per epoch, and a row group
   on a shard boundary is the only one two workers both open (each keeps its part);
2. the worker reads its row groups one at a time (only the feature and label columns) and
   passes them through a shuffle buffer seeded by ``(seed, epoch, shard)``: rows leave in
   random batches once more than ``shuffle_buffer`` rows are held, so memory is one row group
   plus the buffer, whatever the split's size;
3. each batch carries ``ids`` (int32), ``mask``, ``label`` (float32), ``row`` (the row's index
   in the split, for precomputed targets and audits) and, when a ``targets`` function is given
   (the model's), its per-row targets computed from the float64 labels.

Data-parallel ranks must take the same number of optimiser steps per epoch, or DDP's
all-reduce waits forever: :func:`batches_per_rank` gives each rank's count from the row-group
sizes alone, and the trainer stops every rank at the smallest (at most a few rows a rank, and
different rows each epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from grmodel.distributed import split_bounds
from grmodel.features import MISSING_ID, SPLITS, DatasetError, FeatureSchema, label_array

TargetFn = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group: its file, index in the file, rows, and first row's split index."""

    path: str
    index: int
    rows: int
    start: int


@dataclass(frozen=True)
class Piece:
    """Rows ``[lo, hi)`` of row group ``group`` (an index into the split's row-group list)."""

    group: int
    lo: int
    hi: int


def split_paths(processed_dir: str | Path, split: str) -> list[Path]:
    """The Parquet file(s) of a split: ``<split>.parquet``, or the files of a directory so named."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(processed_dir) / f"{split}.parquet"
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".parquet")
        if not files:
            raise DatasetError(f"{path}: directory holds no .parquet files")
        return files
    if not path.is_file():
        raise DatasetError(f"{path}: not found (rule: every split is present)")
    return [path]


def row_groups(paths: Sequence[str | Path], max_rows: int | None = None) -> list[RowGroup]:
    """Every row group of ``paths`` in file order, cut after ``max_rows`` rows when given."""
    groups: list[RowGroup] = []
    start = 0
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        for i in range(meta.num_row_groups):
            rows = meta.row_group(i).num_rows
            if max_rows is not None:
                rows = min(rows, max_rows - start)
            if rows <= 0:
                continue
            groups.append(RowGroup(str(path), i, rows, start))
            start += rows
    return groups


def shard_pieces(group_rows: Sequence[int], order: Sequence[int], n_shards: int) -> list[list[Piece]]:
    """Cut the rows of the groups, taken in ``order``, into ``n_shards`` contiguous shards.

    Shard sizes differ by at most one row; together the shards hold every row exactly once.
    """
    total = int(sum(group_rows))
    bounds = split_bounds(total, n_shards)
    shards: list[list[Piece]] = [[] for _ in range(n_shards)]
    offset = 0  # position of the current group's first row in the ordered sequence
    shard = 0
    for g in order:
        size = int(group_rows[g])
        lo = 0
        while lo < size:
            while bounds[shard][1] <= offset + lo:
                shard += 1
            hi = min(size, bounds[shard][1] - offset)
            shards[shard].append(Piece(int(g), lo, hi))
            lo = hi
        offset += size
    return shards


def batches_per_rank(total_rows: int, world_size: int, workers: int, batch_size: int) -> list[int]:
    """Batches each rank's stream yields per epoch (every worker ends with its own partial batch)."""
    n_workers = max(workers, 1)
    sizes = [hi - lo for lo, hi in split_bounds(total_rows, world_size * n_workers)]
    return [sum(-(-sizes[r * n_workers + w] // batch_size) for w in range(n_workers))
            for r in range(world_size)]


def read_columns(paths: Sequence[str | Path], columns: Sequence[str],
                 max_rows: int | None = None) -> pd.DataFrame:
    """Only ``columns`` of a split (e.g. the label, to fit a vocabulary without the features)."""
    tables = []
    rows = 0
    for path in paths:
        _check_columns(path, columns)
        if max_rows is None:
            tables.append(pq.read_table(path, columns=list(columns)))
            continue
        # With a row cap, read only the row groups that hold the first ``max_rows`` rows.
        file = pq.ParquetFile(path)
        for i in range(file.metadata.num_row_groups):
            if rows >= max_rows:
                break
            group = file.read_row_group(i, columns=list(columns))
            tables.append(group.slice(0, max_rows - rows))
            rows += tables[-1].num_rows
    if not tables:  # max_rows=0: the columns, no rows
        return pq.read_schema(paths[0]).empty_table().select(list(columns)).to_pandas()
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return table.to_pandas()


def _check_columns(path: str | Path, columns: Sequence[str]) -> None:
    names = set(pq.read_schema(path).names)
    missing = [c for c in columns if c not in names]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing}")


class ParquetStream(IterableDataset):
    """Shuffled batches of one split, sharded over ranks and DataLoader workers (see module doc).

    Call :meth:`set_epoch` before iterating; the DataLoader must use ``batch_size=None``
    (batches are made here) and non-persistent workers (each epoch's iterator copies the epoch).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        schema: FeatureSchema,
        label_column: str,
        batch_size: int,
        *,
        seed: int,
        shuffle_buffer: int = 65_536,
        rank: int = 0,
        world_size: int = 1,
        max_rows: int | None = None,
        targets: TargetFn | None = None,
    ):
        super().__init__()
        if batch_size < 1 or shuffle_buffer < 0:
            raise ValueError(f"streaming input: batch_size={batch_size} must be >= 1 and"
                             f" shuffle_buffer={shuffle_buffer} >= 0")
        self.paths = [str(p) for p in paths]
        for path in self.paths:
            _check_columns(path, [*schema.names, label_column])
        self.schema = schema
        self.label_column = label_column
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.rank = rank
        self.world_size = world_size
        self.targets = targets
        self.groups = row_groups(self.paths, max_rows)
        self.epoch = 0

    @property
    def total_rows(self) -> int:
        return sum(g.rows for g in self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches_per_rank(self, workers: int) -> list[int]:
        return batches_per_rank(self.total_rows, self.world_size, workers, self.batch_size)

    def shard_plan(self, epoch: int, n_shards: int) -> list[list[Piece]]:
        """Every shard's pieces for ``epoch`` (shard = rank × workers + worker)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.groups))
        return shard_pieces([g.rows for g in self.groups], order, n_shards)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        shard = self.rank * workers + worker
        pieces = self.shard_plan(self.epoch, self.world_size * workers)[shard]
        rng = np.random.default_rng([self.seed, self.epoch, shard])
        return self._shuffled_batches(self._read(pieces), rng)

    def _read(self, pieces: list[Piece]) -> Iterator[dict[str, np.ndarray]]:
        files: dict[str, pq.ParquetFile] = {}
        columns = [*self.schema.names, self.label_column]
        for piece in pieces:
            group = self.groups[piece.group]
            if group.path not in files:
                files[group.path] = pq.ParquetFile(group.path)
            table = files[group.path].read_row_group(group.index, columns=columns)
            frame = table.slice(piece.lo, piece.hi - piece.lo).to_pandas()
            source = f"{group.path} (row group {group.index})"
            ids, _ = self.schema.arrays(frame, source)  # checks nulls and id ranges
            yield {
                "ids": ids.astype(np.int32),
                "label": label_array(frame, self.label_column, source),
                "row": np.arange(group.start + piece.lo, group.start + piece.hi, dtype=np.int64),
            }

    def _shuffled_batches(self, chunks: Iterator[dict[str, np.ndarray]],
                          rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        held: dict[str, np.ndarray] | None = None
        for chunk in chunks:
            held = chunk if held is None else {k: np.concatenate([held[k], chunk[k]]) for k in held}
            n = len(held["row"])
            ready = (n - self.shuffle_buffer) // self.batch_size * self.batch_size
            if ready > 0:
                # Rows leave uniformly at random from everything held; the buffer keeps the rest.
                perm = rng.permutation(n)
                out = {k: v[perm[:ready]] for k, v in held.items()}
                held = {k: v[perm[ready:]] for k, v in held.items()}
                yield from self._batches(out)
        if held is not None and len(held["row"]):
            perm = rng.permutation(len(held["row"]))
            yield from self._batches({k: v[perm] for k, v in held.items()})

    def _batches(self, rows: dict[str, np.ndarray]) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(rows["row"]), self.batch_size):
            part = {k: v[start : start + self.batch_size] for k, v in rows.items()}
            ids = torch.from_numpy(np.ascontiguousarray(part["ids"]))
            batch = {
                "ids": ids,
                "mask": (ids != MISSING_ID).float(),
                "label": torch.from_numpy(part["label"].astype(np.float32)),
                "row": torch.from_numpy(part["row"]),
            }
            if self.targets is not None:
                batch.update({k: torch.from_numpy(np.ascontiguousarray(v))
                              for k, v in self.targets(part["label"]).items()})
            yield batch

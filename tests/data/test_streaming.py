"""Streaming input: sharding covers every row once, the shuffle is seeded, training learns."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from grmodel import metrics
from grmodel.checkpoint import load_checkpoint
from grmodel.config import RunConfig
from grmodel.data.streaming import ParquetStream, batches_per_rank, shard_pieces, split_paths
from grmodel.features import DatasetError, FeatureSchema, read_manifest
from grmodel.models.gr import GRModel
from grmodel.predict import predict_frame
from grmodel.training.batches import SplitArrays
from grmodel.training.loop import fit_label_state_from_columns, train_model

ROW_GROUP = 700  # grouped_dataset (tests/conftest.py): 4,800 train rows in 7 row groups


@pytest.fixture(scope="module")
def grouped(grouped_dataset: Path) -> Path:
    return grouped_dataset


def stream(dataset: Path, **kwargs) -> ParquetStream:
    schema = FeatureSchema.from_dict(read_manifest(dataset)["features"])
    options = {"batch_size": 128, "seed": 3, "shuffle_buffer": 500, **kwargs}
    return ParquetStream(split_paths(dataset, "train"), schema, "label", **options)


def epoch_rows(ds: ParquetStream, epoch: int) -> list[np.ndarray]:
    ds.set_epoch(epoch)
    return [batch["row"].numpy() for batch in ds]


@pytest.mark.parametrize("n_shards", [1, 2, 3, 8])
def test_shards_cover_every_row_once_with_sizes_one_apart(n_shards):
    sizes = [700, 700, 5, 700, 1]
    order = np.random.default_rng(0).permutation(len(sizes))
    shards = shard_pieces(sizes, order, n_shards)
    seen = [(p.group, row) for shard in shards for p in shard for row in range(p.lo, p.hi)]
    assert sorted(seen) == [(g, r) for g, size in enumerate(sizes) for r in range(size)]
    counts = [sum(p.hi - p.lo for p in shard) for shard in shards]
    assert max(counts) - min(counts) <= 1


def test_ranks_and_workers_get_disjoint_shards_covering_the_split(grouped):
    """Two ranks x two DataLoader worker processes: every row exactly once per epoch."""
    total = 0
    rows: list[np.ndarray] = []
    for rank in range(2):
        ds = stream(grouped, rank=rank, world_size=2)
        total = ds.total_rows
        ds.set_epoch(1)
        loader = DataLoader(ds, batch_size=None, num_workers=2)
        batches = [b["row"].numpy() for b in loader]
        assert len(batches) == batches_per_rank(total, 2, 2, 128)[rank]
        rows.append(np.concatenate(batches))
    assert not set(rows[0]) & set(rows[1])
    assert np.array_equal(np.sort(np.concatenate(rows)), np.arange(total))


def test_batches_carry_the_rows_features_and_labels(grouped):
    frame = pd.read_parquet(grouped / "train.parquet")
    batch = next(iter(stream(grouped, targets=None)))
    rows = batch["row"].numpy()
    assert batch["ids"].dtype == torch.int32 and batch["mask"].dtype == torch.float32
    np.testing.assert_array_equal(batch["ids"][:, 0].numpy(), frame["user_id"].to_numpy()[rows])
    np.testing.assert_allclose(batch["label"].numpy(), frame["label"].to_numpy()[rows], rtol=1e-6)


def test_shuffle_is_seeded_and_changes_with_the_epoch(grouped):
    a, b = epoch_rows(stream(grouped), 0), epoch_rows(stream(grouped), 0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    later = epoch_rows(stream(grouped), 1)
    assert not np.array_equal(np.concatenate(a), np.concatenate(later))
    other_seed = epoch_rows(stream(grouped, seed=4), 0)
    assert not np.array_equal(np.concatenate(a), np.concatenate(other_seed))
    # A buffer longer than a row group mixes rows of several groups into each batch.
    first = epoch_rows(stream(grouped, shuffle_buffer=1500), 0)[0]
    assert len(np.unique(first // ROW_GROUP)) >= 3


def test_label_state_from_columns_equals_the_in_memory_fit(grouped, gr_config):
    config = gr_config(grouped)
    schema = FeatureSchema.from_dict(read_manifest(grouped)["features"])
    train = SplitArrays.load(grouped, "train", schema, "label")
    streamed = fit_label_state_from_columns(config, schema, split_paths(grouped, "train"))
    assert streamed == GRModel.fit_label_state(train.label, config, train.ids, schema)
    d2q = RunConfig().with_overrides(["model_name=d2q", "head.duration_field=item_cat"])
    from grmodel.models.d2q import D2QModel

    assert (fit_label_state_from_columns(d2q, schema, split_paths(grouped, "train"))
            == D2QModel.fit_label_state(train.label, d2q, train.ids, schema))
    with pytest.raises(DatasetError, match="item_duration_bucket"):
        fit_label_state_from_columns(RunConfig().with_overrides(["model_name=d2q"]), schema,
                                     split_paths(grouped, "train"))


def test_missing_column_is_named_with_its_file(grouped, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(grouped, root)
    frame = pd.read_parquet(root / "train.parquet").drop(columns=["item_cat"])
    frame.to_parquet(root / "train.parquet", index=False)
    with pytest.raises(DatasetError, match=r"train\.parquet: missing columns \['item_cat'\]"):
        stream(root)


def test_streaming_training_learns(grouped, gr_config, tmp_path):
    config = gr_config(grouped, "train.streaming=true", "train.shuffle_buffer=1000",
                       "train.epochs=8", "train.patience=8", "train.lr=3e-3")
    result = train_model(config, tmp_path / "m")
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    model, _ = load_checkpoint(tmp_path / "m")
    test = pd.read_parquet(grouped / "test.parquet")
    y = test["label"].to_numpy()
    median = np.median(pd.read_parquet(grouped / "train.parquet")["label"])
    assert metrics.mae(y, predict_frame(model, test)) <= 0.8 * metrics.mae(y, np.full_like(y, median))


def test_ingest_writes_row_groups_of_the_configured_size(tiny_raw, tiny_processed, tmp_path):
    from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
    from grmodel.data.streaming import row_groups

    out = tmp_path / "p"
    ingest_kuairec(tiny_raw, out, IngestConfig(row_group_rows=1000, chunk_rows=2500))
    sizes = [g.rows for g in row_groups(split_paths(out, "train"))]
    assert len(sizes) > 2 and set(sizes[:-1]) == {1000} and 0 < sizes[-1] <= 1000
    for split in ("train", "valid", "test"):  # the same rows and values, in other row groups
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{split}.parquet"),
                                      pd.read_parquet(tiny_processed / f"{split}.parquet"))

"""One identity of a dataset, the same whichever record carries it, and one rule for "is this
the same run"."""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow.parquet as pq

from grmodel.config import RunConfig
from grmodel.data.io import sha256_file
from grmodel.training.records import (
    RESULT_NEUTRAL_KEYS,
    RESUME_FREE_KEYS,
    dataset_fingerprint,
    same_run,
    trained_on,
)


def test_the_fingerprint_hashes_the_manifest_and_every_split_file(planted_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(planted_dataset, data)
    digest = hashlib.sha256()
    for name in ("manifest.json", "train.parquet", "valid.parquet", "test.parquet"):
        digest.update(f"{name}:{sha256_file(data / name)}\n".encode())
    assert dataset_fingerprint(data) == digest.hexdigest() == trained_on(data)
    assert trained_on("") is None and trained_on(tmp_path) is None  # arrays, no dataset


def test_a_split_stored_as_part_files_is_fingerprinted_part_by_part(planted_dataset, tmp_path):
    """The part-file layout the streaming trainer reads (a split as a directory)."""
    data = tmp_path / "data"
    shutil.copytree(planted_dataset, data)
    table = pq.read_table(data / "train.parquet")
    (data / "train.parquet").unlink()
    (data / "train.parquet").mkdir()
    half = len(table) // 2
    pq.write_table(table.slice(0, half), data / "train.parquet" / "part-0.parquet")
    pq.write_table(table.slice(half), data / "train.parquet" / "part-1.parquet")
    before = dataset_fingerprint(data)
    assert before != dataset_fingerprint(planted_dataset)
    pq.write_table(table.slice(1, half), data / "train.parquet" / "part-0.parquet")
    assert dataset_fingerprint(data) != before


def test_a_run_is_the_same_on_the_same_data_with_only_its_free_keys_changed():
    config = RunConfig().with_overrides(["train.epochs=3"])
    recorded = config.to_dict()
    assert same_run(recorded, "f1", config.with_overrides(["train.num_threads=4"]), "f1",
                    RESULT_NEUTRAL_KEYS)
    assert not same_run(recorded, "f1", config, "f2", RESULT_NEUTRAL_KEYS)  # other data
    assert not same_run(recorded, "f1", config.with_overrides(["train.epochs=4"]), "f1",
                        RESULT_NEUTRAL_KEYS)
    moved = config.with_overrides(["data.processed_dir=/elsewhere"])
    assert same_run(recorded, "f1", moved, "f1", RESULT_NEUTRAL_KEYS)  # the fingerprint names the data
    assert not same_run(recorded, "f1", moved, "f1", RESUME_FREE_KEYS)
    assert same_run(recorded, "f1", config.with_overrides(["train.device=cpu"]), "f1", RESUME_FREE_KEYS)


def test_a_model_records_the_fingerprint_of_the_data_it_trained_on(planted_dataset, gr_config,
                                                                    tmp_path):
    from grmodel.training.loop import train_model
    from grmodel.training.records import finished_model

    data = tmp_path / "data"
    shutil.copytree(planted_dataset, data)
    config = gr_config(data, "train.epochs=1", "train.max_steps=2")
    result = train_model(config, tmp_path / "m")
    meta = json.loads((result.model_dir / "checkpoint.json").read_text())
    assert meta["dataset_fingerprint"] == dataset_fingerprint(data)
    assert finished_model(config, tmp_path / "m") is not None  # the same identity reads it back
    (data / "valid.parquet").write_bytes((data / "valid.parquet").read_bytes() + b"\0")
    assert finished_model(config, tmp_path / "m") is None  # the data changed under the same path

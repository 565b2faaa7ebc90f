from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grmodel import metrics
from grmodel.checkpoint import load_checkpoint
from grmodel.features import read_split
from grmodel.predict import predict_frame
from grmodel.training.loop import train_model


@pytest.fixture(scope="module")
def trained(trained_gr):
    return trained_gr


def test_gr_learns_the_planted_structure(planted_dataset, trained):
    """A working GR beats the training median by a wide margin; broken decoding does not."""
    model, _ = load_checkpoint(trained.model_dir)
    test = read_split(planted_dataset, "test")
    y = test["label"].to_numpy()
    pred = predict_frame(model, test)
    median = np.median(read_split(planted_dataset, "train")["label"])
    baseline_mae = metrics.mae(y, np.full_like(y, median))
    assert metrics.mae(y, pred) <= 0.8 * baseline_mae
    assert metrics.xauc(y, pred) >= 0.6
    # The generated greedy token sequences, decoded by the codec, are good predictions too.
    ids, mask = model.schema.arrays(test)
    with torch.no_grad():
        _, tokens = model.generate(torch.as_tensor(ids), torch.as_tensor(mask), return_tokens=True)
    assert metrics.mae(y, model.codec.decode(tokens.numpy())) <= 0.8 * baseline_mae


def test_checkpoint_is_self_describing(trained):
    meta = json.loads((trained.model_dir / "checkpoint.json").read_text())
    assert meta["model_name"] == "gr"
    assert meta["best_valid"]["mae"] == pytest.approx(trained.best_valid["mae"])
    assert meta["epoch"] == trained.best_epoch
    assert len(meta["history"]) == len(trained.history)
    assert meta["label_state"]["vocab"]["kind"] == "dynamic_quantile"
    assert meta["config"]["train"]["lr"] == pytest.approx(2e-3)
    payload = torch.load(trained.model_dir / "model.pt", weights_only=True)
    assert set(payload) == {"state_dict", "meta"}
    assert [p.name for p in trained.model_dir.parent.iterdir()] == ["model"]  # no staging left


def test_same_seed_same_metrics_on_cpu(planted_dataset, tmp_path, gr_config):
    cfg = gr_config(planted_dataset, "train.epochs=1", "train.max_steps=15")
    a = train_model(cfg, tmp_path / "a")
    b = train_model(cfg, tmp_path / "b")
    assert a.best_valid == b.best_valid
    c = train_model(cfg.with_overrides(["train.seed=7"]), tmp_path / "c")
    assert c.best_valid != a.best_valid


def test_early_stopping_and_validation_selection(planted_dataset, tmp_path, gr_config):
    cfg = gr_config(planted_dataset, "train.epochs=30", "train.patience=1", "train.lr=5e-2")
    result = train_model(cfg, tmp_path / "m")
    assert len(result.history) < 30
    best = min(h["valid_mae"] for h in result.history)
    assert result.best_valid["mae"] == pytest.approx(best)


def test_bad_config_fails_before_writing(planted_dataset, tmp_path, gr_config):
    with pytest.raises(ValueError, match="n_heads"):
        train_model(gr_config(planted_dataset, "model.n_heads=5"), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_ctrl_c_stops_between_batches_and_the_run_resumes_to_the_same_model(
        planted_dataset, tmp_path, gr_config):
    """SIGINT mid-epoch: the loop stops at the next batch with that step saved; --resume then
    ends exactly as the uninterrupted run."""
    import os
    import signal
    import threading
    import time

    cfg = gr_config(planted_dataset, "train.epochs=2", "train.checkpoint_every_steps=5")
    full = train_model(cfg, tmp_path / "full")
    state = tmp_path / "cut.state"

    def interrupt() -> None:  # Ctrl-C once the run has saved its first state
        deadline = time.monotonic() + 300
        while not (state / "state.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=interrupt)
    sender.start()
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, tmp_path / "cut", state_dir=state)
    sender.join()
    assert not (tmp_path / "cut").exists()
    saved = json.loads((state / "state.json").read_text())
    assert 5 <= saved["step"] < 2 * 38  # 4,800 rows in batches of 128: 38 a epoch
    resumed = train_model(cfg, tmp_path / "cut", state_dir=state, resume=True)
    assert resumed.best_valid == full.best_valid
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]


def test_fit_takes_arrays_without_a_dataset(planted_dataset, tmp_path, gr_config, monkeypatch):
    """fit() on in-memory arrays (as bench/bench_predict.py trains): no manifest to read."""
    from grmodel.features import FeatureSchema, read_manifest
    from grmodel.training.batches import SplitArrays
    from grmodel.training.loop import fit

    schema = FeatureSchema.from_dict(read_manifest(planted_dataset)["features"])
    train = SplitArrays.load(planted_dataset, "train", schema, "label", None)
    valid = SplitArrays.load(planted_dataset, "valid", schema, "label", None)
    monkeypatch.chdir(tmp_path)  # no manifest.json here either
    cfg = gr_config(planted_dataset, "train.epochs=1", "train.max_steps=2", "data.processed_dir=")
    result = fit(cfg, schema, train, valid, tmp_path / "m")
    meta = json.loads((result.model_dir / "checkpoint.json").read_text())
    assert meta["dataset_fingerprint"] is None and "collapse" in meta


def test_a_cosine_schedule_decays_the_rate_and_changes_the_run(planted_dataset, tmp_path, gr_config):
    from grmodel.config import RunConfig
    from grmodel.training.epochs import learning_rate

    tc = RunConfig().with_overrides(["train.lr=1e-3", "train.lr_schedule=cosine"]).train
    rates = [learning_rate(step, 100, tc) for step in (0, 50, 99, 100, 150)]
    assert rates[0] == pytest.approx(1e-3) and rates[1] == pytest.approx(5e-4)
    assert rates[2] < 1e-6 and rates[3] == rates[4] == 0.0
    assert learning_rate(99, 100, RunConfig().train) == RunConfig().train.lr  # constant
    cfg = gr_config(planted_dataset, "train.epochs=1", "train.max_steps=10")
    constant = train_model(cfg, tmp_path / "constant")
    cosine = train_model(cfg.with_overrides(["train.lr_schedule=cosine"]), tmp_path / "cosine")
    assert cosine.best_valid != constant.best_valid

"""Data-parallel training and resumption: shards, exact resume, and a real 2-process torchrun
run on CPU (gloo) whose worker is killed mid-epoch and which then resumes and finishes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_runs import FAST_GR

from grmodel.checkpoint import load_checkpoint
from grmodel.config import RunConfig
from grmodel.distributed import DistContext, distributed_context, launch_env
from grmodel.predict import predict_frame
from grmodel.training.batches import MemoryBatches, SplitArrays
from grmodel.training.loop import train_model
from grmodel.training.state import STATE_FILE, STATE_SUMMARY, StateStore


def test_in_memory_ranks_get_disjoint_equal_shares_each_epoch():
    n = 1001
    data = SplitArrays(np.zeros((n, 1), np.int32), np.ones((n, 1), np.float32), np.zeros(n))
    shares = {}
    for epoch in range(2):
        for rank in range(2):
            source = MemoryBatches(data, {}, 64, 5, DistContext(rank=rank, world_size=2))
            shares[epoch, rank] = torch.cat([b["row"] for b in source.epoch(epoch)]).numpy()
        assert len(shares[epoch, 0]) == len(shares[epoch, 1]) == n // 2
        assert not set(shares[epoch, 0]) & set(shares[epoch, 1])
    assert not np.array_equal(shares[0, 0], shares[1, 0])  # a new deal every epoch


def test_launch_environment_is_read_and_checked(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launch_env() is None
    with distributed_context("cpu") as ctx:
        assert (ctx.rank, ctx.world_size, ctx.is_main) == (0, 1, True)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match="RANK=3"):
        launch_env()


def test_killed_run_resumes_exactly_where_its_state_left_off(planted_dataset, gr_config, tmp_path,
                                                             monkeypatch):
    """Stopping right after a mid-epoch state write, then resuming, gives the very weights and
    history of an uninterrupted run; a changed config is refused by name."""
    cfg = gr_config(planted_dataset, "train.epochs=2", "train.checkpoint_every_steps=5",
                    "data.max_train_rows=2000")  # 16 batches an epoch
    full = train_model(cfg, tmp_path / "full", state_dir=tmp_path / "full.state")
    assert not (tmp_path / "full.state").exists()  # removed once the model is written

    real_save, saves = StateStore.save, []

    def save_then_die(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt  # as if killed right after the step-10 state
    monkeypatch.setattr(StateStore, "save", save_then_die)
    state = tmp_path / "cut.state"
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, tmp_path / "cut", state_dir=state)
    monkeypatch.undo()
    assert not (tmp_path / "cut").exists()
    assert json.loads((state / STATE_SUMMARY).read_text())["step"] == 10

    with pytest.raises(ValueError, match=r"another config .*train\.lr"):
        train_model(cfg.with_overrides(["train.lr=1e-2"]), tmp_path / "cut", state_dir=state,
                    resume=True)
    resumed = train_model(cfg, tmp_path / "cut", state_dir=state, resume=True)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert resumed.best_valid == full.best_valid
    a, _ = load_checkpoint(tmp_path / "full")
    b, _ = load_checkpoint(tmp_path / "cut")
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not state.exists()
    # A restarted job whose model is already written does not train again.
    again = train_model(cfg, tmp_path / "cut", state_dir=state, resume=True)
    assert again.best_valid == full.best_valid and again.train_seconds == 0.0


def _torchrun(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "grmodel.cli", "train", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _workers(launcher: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of the launcher's worker processes (read from /proc)."""
    found = {}
    path = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    for pid in path.read_text().split() if path.exists() else []:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(pid)
    return found


def _wait(condition, timeout: float, what: str, launcher: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if launcher.poll() is not None:
            pytest.fail(f"torchrun ended (status {launcher.returncode}) before {what}:\n"
                        f"{launcher.stdout.read()}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _mid_epoch_state(state_dir: Path) -> bool:
    try:
        return json.loads((state_dir / STATE_SUMMARY).read_text())["batch"] > 0
    except (OSError, ValueError):
        return False


def _weights_digest(model_dir: Path) -> str:
    """SHA-256 of a saved model's parameters and buffers (in state_dict order)."""
    model, _ = load_checkpoint(model_dir)
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _run_to_end(launcher: subprocess.Popen, timeout: float) -> str:
    try:
        log, _ = launcher.communicate(timeout=timeout)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 0, log
    return log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker pids from /proc")
@pytest.mark.long
def test_torchrun_two_cpu_processes_kill_a_worker_and_resume(grouped_dataset, tmp_path):
    """``grmodel train --config-json`` under ``torchrun --nproc_per_node=2`` (gloo, streaming): rank 0 is
    SIGKILLed mid-epoch, torchrun stops the other rank, and the rerun with --resume continues
    from the last state. What the run records then equals what an uninterrupted run of the same
    config records: the saved weights (bit for bit), the validation history and the steps
    (each rank trained 2,400 of the 4,800 rows an epoch); the loss fell, the model predicts."""
    out, state, ref = tmp_path / "model", tmp_path / "model.state", tmp_path / "reference"
    config = RunConfig().with_overrides([
        *FAST_GR, "train.streaming=true", "train.shuffle_buffer=1000", "train.lr=3e-3",
        "train.epochs=4", "train.patience=4", "train.checkpoint_every_steps=4",
        "train.on_collapse=warn"])  # 4 toy epochs may end near-constant: kept, marked
    # The config travels as JSON text, as in a PyTorchJob (grmodel/k8s/pytorchjob.py).
    args = ["--data", str(grouped_dataset), "--config-json", config.to_json()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    _run_to_end(_torchrun([*args, "--out", str(ref)], env), 180)

    args += ["--out", str(out)]
    first = _torchrun(args, env)
    workers: dict[int, int] = {}
    try:
        workers = _wait(lambda: (lambda w: w if len(w) == 2 else None)(_workers(first)), 90,
                        "two workers", first)
        _wait(lambda: _mid_epoch_state(state), 90, "a mid-epoch training state", first)
        os.kill(workers[0], signal.SIGKILL)
        first.wait(timeout=60)  # torchrun notices the dead worker and stops the other one
    finally:
        if first.poll() is None:  # only on a failure above: leave no process behind
            os.killpg(first.pid, signal.SIGKILL)
            for pid in workers.values():  # workers run in sessions of their own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert first.returncode != 0
    assert not out.exists()
    saved = json.loads(torch.load(state / STATE_FILE, weights_only=True)["meta"])["progress"]
    assert saved["batch"] > 0 and saved["step"] > 0

    log = _run_to_end(_torchrun([*args, "--resume"], env), 180)
    assert f"resuming from step {saved['step']} (epoch {saved['epoch']}" in log
    assert not state.exists()

    assert _weights_digest(out) == _weights_digest(ref)
    (model, meta), (_, ref_meta) = load_checkpoint(out), load_checkpoint(ref)
    history, ref_history = meta["history"], ref_meta["history"]
    assert [h["step"] for h in history] == [h["step"] for h in ref_history] == [19, 38, 57, 76]
    for key in ("valid_mae", "valid_xauc"):
        assert [h[key] for h in history] == [h[key] for h in ref_history]
    # The resumed epoch's loss sums the two parts in another order: equal up to rounding.
    assert [h["train_loss"] for h in history] == pytest.approx([h["train_loss"] for h in ref_history])
    losses = [h["train_loss"] for h in history]
    assert losses[-1] < losses[0]
    pred = predict_frame(model, pd.read_parquet(grouped_dataset / "test.parquet"))
    assert np.isfinite(pred).all() and (pred >= 0).all()

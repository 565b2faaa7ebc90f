"""NCCL data parallel on CUDA: ``torchrun`` processes wrap GR the way the trainer does
(``grmodel.distributed``) and check that DDP broadcasts rank 0's weights, averages gradients
over ranks and keeps the ranks' weights identical, in fp32 and under bf16 autocast.

Two processes share one GPU where NCCL allows it; NCCL refuses two ranks on one device
("Duplicate GPU detected"), and then the test runs one process (NCCL still initialises, DDP
still wraps and reduces) and records why. With two GPUs or more each rank has its own.
Marked ``cuda``: skipped without a CUDA device. This file is also the torchrun worker.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.cuda

NCCL_REFUSES_SHARED_GPU = re.compile(r"Duplicate GPU detected[^\n]*|ncclInvalidUsage[^\n]*")
SHARD_ROWS = 256
SMALL = ["model.emb_dim=16", "model.encoder_hidden=32", "model.d_model=32", "model.n_heads=4",
         "model.ffn_dim=64", "model.n_layers=2", "model.dropout=0.0"]


def _flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _flat_weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def worker(dataset: Path, out: Path) -> None:
    """One rank: DDP on this rank's GPU (rank mod GPUs), results in ``out/rank<R>.json``."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from grmodel.config import RunConfig
    from grmodel.distributed import DistContext, LossModule, all_gather_tensor, autocast, wrap_for_training
    from grmodel.features import FeatureSchema, read_manifest, read_split
    from grmodel.models.gr import GRModel

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device("cuda", rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    # device_id makes NCCL set up its communicator now, so a refusal surfaces here.
    dist.init_process_group("nccl", timeout=timedelta(seconds=60), device_id=device)
    ctx = DistContext(rank=rank, world_size=world, device=device)

    schema = FeatureSchema.from_dict(read_manifest(dataset)["features"])
    frame = read_split(dataset, "train")
    labels = frame["label"].to_numpy(copy=True)
    config = RunConfig().with_overrides(SMALL)
    torch.manual_seed(rank)  # each rank starts from other weights: DDP must send rank 0's
    model = GRModel(schema, config, GRModel.fit_label_state(labels, config)).to(device)
    own = _flat_weights(model)
    ids, mask = schema.arrays(frame)
    rows = slice(rank * SHARD_ROWS, (rank + 1) * SHARD_ROWS)
    shard = {"ids": torch.as_tensor(ids[rows], device=device),
             "mask": torch.as_tensor(mask[rows], device=device),
             "label": torch.as_tensor(labels[rows], dtype=torch.float32, device=device),
             "tokens": torch.as_tensor(model.targets(labels[rows])["tokens"], device=device)}

    # The trainer's wrapping; with one process it leaves the model bare, so wrap it here.
    module = (wrap_for_training(model, ctx) if world > 1
              else DistributedDataParallel(LossModule(model), device_ids=[device.index]))
    assert isinstance(module, DistributedDataParallel)
    start = _flat_weights(model)
    alone = copy.deepcopy(model)  # rank 0's weights, outside DDP

    torch.manual_seed(100 + rank)  # the same CLEM draws in both passes of this rank
    loss, _ = alone.loss(shard, step=50, total_steps=100)
    loss.backward()
    mean_grad = _flat_grad(alone)
    dist.all_reduce(mean_grad)
    mean_grad /= world
    torch.manual_seed(100 + rank)
    loss, _ = module(shard, 50, 100)
    loss.backward()
    ddp_grad = _flat_grad(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.step()
    after_fp32 = _flat_weights(model)

    optimizer.zero_grad()
    with autocast(device):  # the trainer's mode on CUDA
        loss_bf16, _ = module(shard, 50, 100)
    loss_bf16.backward()
    optimizer.step()
    after_bf16 = _flat_weights(model)

    def same_everywhere(t: torch.Tensor) -> bool:
        return all(torch.equal(part, t.cpu()) for part in all_gather_tensor(t, ctx))

    result = {
        "rank": rank, "world_size": world, "device": str(device),
        "gpus": torch.cuda.device_count(), "nccl": ".".join(map(str, torch.cuda.nccl.version())),
        "kept_own_weights": torch.equal(own, start), "same_at_start": same_everywhere(start),
        "same_after_fp32_step": same_everywhere(after_fp32),
        "same_after_bf16_step": same_everywhere(after_bf16),
        "bf16_step_moved": not torch.equal(after_fp32, after_bf16),
        "grad_max_abs_diff": float((ddp_grad - mean_grad).abs().max()),
        "grad_max_abs": float(mean_grad.abs().max()),
        "loss_bf16": float(loss_bf16),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def _launch(processes: int, dataset: Path, out: Path) -> subprocess.CompletedProcess:
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", __file__, str(dataset), str(out)]
    env = {**os.environ, "NCCL_DEBUG": "WARN", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=150, env=env, check=False)


def test_nccl_ddp_broadcasts_weights_and_averages_gradients(planted_dataset, tmp_path, record_property):
    processes = 2
    run = _launch(processes, planted_dataset, tmp_path / "two")
    refusal = NCCL_REFUSES_SHARED_GPU.search(run.stdout + run.stderr)
    if run.returncode != 0 and torch.cuda.device_count() == 1 and refusal:
        record_property("nccl_two_processes_one_gpu", f"refused: {refusal.group(0).strip()}")
        processes = 1
        run = _launch(processes, planted_dataset, tmp_path / "one")
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    ranks = [json.loads((tmp_path / ("two" if processes == 2 else "one") / f"rank{r}.json").read_text())
             for r in range(processes)]
    record_property("nccl_processes", processes)
    record_property("nccl_version", ranks[0]["nccl"])
    record_property("nccl_devices", ",".join(r["device"] for r in ranks))
    worst = max(r["grad_max_abs_diff"] / r["grad_max_abs"] for r in ranks)
    record_property("ddp_grad_rel_diff", worst)

    assert all(r["same_at_start"] for r in ranks)
    assert ranks[0]["kept_own_weights"]
    assert not any(r["kept_own_weights"] for r in ranks[1:])  # rank 0's weights arrived
    assert worst <= 1e-4, "DDP's gradient is not the mean of the ranks' gradients"
    assert all(r["same_after_fp32_step"] and r["same_after_bf16_step"] for r in ranks)
    assert all(r["bf16_step_moved"] for r in ranks)
    assert all(torch.isfinite(torch.tensor(r["loss_bf16"])) for r in ranks)


if __name__ == "__main__":
    worker(Path(sys.argv[1]), Path(sys.argv[2]))

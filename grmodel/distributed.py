"""Where a run executes: the device (:func:`resolve_device`, bf16 :func:`autocast` on CUDA) and
the process group of data-parallel training under ``torchrun``.

``grmodel train`` runs unchanged as one process or under ``torchrun --nproc_per_node=N``:
:func:`distributed_context` reads the launcher's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), joins the process group (gloo on CPU, NCCL on CUDA) and says which rank this
process is. Without those variables it is a plain single-process context, and every helper
here is a no-op, so the single-process trainer pays nothing for them.

Models train through their own ``loss(batch, step, total_steps)`` method, which
DistributedDataParallel does not see: DDP hooks only ``forward``. :class:`LossModule` is a
one-line ``nn.Module`` whose ``forward`` calls ``model.loss``, and that module is what gets
wrapped, so DDP's gradient all-reduce runs on every backward pass.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but no CUDA device is available")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bf16 autocast on CUDA; a no-op context on CPU (CPU runs stay exact and reproducible)."""
    use = enabled and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use)


@dataclass(frozen=True)
class DistContext:
    """Which process this is among the data-parallel workers, and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, states and logs."""
        return self.rank == 0


def launch_env() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) when started by torchrun with more than one process."""
    if not all(name in os.environ for name in LAUNCH_VARS):
        return None
    try:
        rank, world, local = (int(os.environ[name]) for name in LAUNCH_VARS)
    except ValueError:
        raise ValueError(f"torchrun environment: {', '.join(LAUNCH_VARS)} must be integers, got "
                         + ", ".join(f"{n}={os.environ[n]!r}" for n in LAUNCH_VARS)) from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"torchrun environment: RANK={rank} is not in [0, WORLD_SIZE={world})")
    return (rank, world, local) if world > 1 else None


@contextlib.contextmanager
def distributed_context(device_name: str = "auto") -> Iterator[DistContext]:
    """Join the process group when launched by torchrun; leave it on exit.

    A process group that already exists (a caller set one up) is used and left alone.
    """
    env = launch_env()
    if env is None:
        yield DistContext(device=resolve_device(device_name))
        return
    rank, world, local = env
    device = resolve_device(device_name)
    if device.type == "cuda":
        # One GPU per process: LOCAL_RANK picks it (NCCL needs the device set before init).
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} CUDA devices"
                             " are visible (rule: --nproc_per_node <= GPUs per node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise ValueError(f"process group has rank {dist.get_rank()} of {dist.get_world_size()},"
                         f" the environment says {rank} of {world}")
    try:
        yield DistContext(rank=rank, world_size=world, device=device)
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


class LossModule(nn.Module):
    """``forward`` = ``model.loss``: the module DDP wraps, so its hooks see the training pass."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor], step: int, total_steps: int
                ) -> tuple[torch.Tensor, dict[str, float]]:
        return self.model.loss(batch, step, total_steps)


def wrap_for_training(model: nn.Module, ctx: DistContext) -> nn.Module:
    """The module whose call gives ``(loss, parts)``: DDP-wrapped when there are several ranks.

    DDP broadcasts rank 0's weights at construction, so every rank starts from the same model.
    Buffers are constants here (vocabulary tables, duration groups), so they are not re-sent
    before every forward.
    """
    module = LossModule(model)
    if not ctx.distributed:
        return module

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sums over ranks (float64), e.g. loss sums and sample counts."""
    if not ctx.distributed:
        return list(values)

    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def all_gather_tensor(t: torch.Tensor, ctx: DistContext) -> list[torch.Tensor]:
    """Every rank's ``t`` (same shape and dtype on all ranks), as CPU tensors in rank order."""
    if not ctx.distributed:
        return [t.cpu()]

    local = t.to(ctx.device)
    parts = [torch.empty_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(parts, local)
    return [p.cpu() for p in parts]


def gather_rows(local: np.ndarray, counts: list[int], ctx: DistContext) -> np.ndarray:
    """Concatenate each rank's 1-D float array in rank order; ``counts`` are their lengths.

    all_gather needs equal shapes, so every rank pads to the longest part.
    """
    if not ctx.distributed:
        return local
    longest = max(counts)
    padded = np.zeros(longest, dtype=np.float64)
    padded[: len(local)] = local
    parts = all_gather_tensor(torch.from_numpy(padded), ctx)
    return np.concatenate([p.numpy()[:n] for p, n in zip(parts, counts)])


def split_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``range(n)``, sizes differing by at most one."""
    return [(k * n // parts, (k + 1) * n // parts) for k in range(parts)]


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s dropout / sampling stream (rank 0 keeps ``seed``)."""
    return seed if rank == 0 else seed + 1_000_003 * rank


def describe(ctx: DistContext) -> dict[str, Any]:
    return {"rank": ctx.rank, "world_size": ctx.world_size, "device": str(ctx.device)}

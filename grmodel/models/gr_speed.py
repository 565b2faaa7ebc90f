"""GR's decoder made fast on CPU: how it computes, not what it computes.

At GR's training sizes (batches of a few hundred rows, target sequences of a few steps,
attention over a dozen) torch's CPU kernels spend most of their time on overhead. These
pieces exist only for GR's decoder (grmodel/models/gr.py); each docstring says what it
replaces and why, and bench/bench_gr.py measures the decoder's training and prediction speed.

* :func:`short_softmax`: softmax over a short last dimension, forward and backward.
* :class:`Dropout16`: dropout from 16-bit random draws.
* :class:`Packing`: the position-wise layers on a batch's real steps alone.
* :class:`KVCache`: preallocated keys and values for greedy decoding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from grmodel.models.base import reproducible_exp


class _ShortSoftmax(torch.autograd.Function):
    """Softmax over a short last dimension (attention over at most a few dozen steps).

    torch's CPU softmax kernel vectorises along the last dimension and is slow when it is
    short: at GR's training sizes ([512, 8, T, T], T about 10) it took 3x what these few
    elementwise ops take, forward and backward.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = reproducible_exp(x - x.amax(dim=-1, keepdim=True))
        y = y.div_(y.sum(dim=-1, keepdim=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(dim=-1, keepdim=True))


def short_softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension, fast when it is short (see _ShortSoftmax)."""
    return _ShortSoftmax.apply(x)


class Dropout16(nn.Module):
    """Dropout whose keep mask comes from 16-bit random draws, four per 64-bit integer.

    torch's CPU dropout draws a double per element through ``bernoulli_``: at GR's sizes that
    made each dropout cost about three times the linear layer before it. Here ``p`` is rounded
    to a multiple of 1/65536 (0.1 becomes 0.100006).
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability {p} is not in [0, 1)")
        self.p = p
        self.threshold = round(p * 65536) - 32768  # int16 draws at or above it are kept

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        # The full int64 range: random_() alone leaves the top bit, one int16 lane's sign, 0.
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
        bits.random_(-(2**63), 2**63 - 1)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


class Packing:
    """Where the real steps of a batch of right-padded sequences sit, for running the decoder
    on those steps alone.

    Training pads every row to the batch's longest label, and most rows are far shorter (mean
    about 5 steps, longest 12 to 19 on KuaiRec), so the position-wise work (linear layers,
    layer norms, dropout, the head) runs on the packed ``[N, D]`` steps. Only self-attention
    needs the grid: it runs on the ``[B, T]`` layout with zeros at the padding, which the causal
    mask never lets a real step see, because each row's real steps are a prefix of it.
    """

    def __init__(self, real: torch.Tensor):
        self.rows, self.steps = real.shape
        self.row, self.step = real.nonzero(as_tuple=True)  # [N] each real step's place
        self.first = self.step == 0  # [N] step 0 of its row
        self.causal = torch.ones(self.steps, self.steps, dtype=torch.bool,
                                 device=real.device).triu(1)  # [T, T] True above the diagonal

    def pack(self, grid: torch.Tensor) -> torch.Tensor:
        """[B, T, ...] -> [N, ...]"""
        return grid[self.row, self.step]

    def row_sums(self, values: torch.Tensor) -> torch.Tensor:
        """[N] -> [B]: each row's sum over its steps."""
        return values.new_zeros(self.rows).index_add(0, self.row, values)


class KVCache:
    """Per-layer key/value tensors preallocated for the longest decode."""

    def __init__(self, layers: int, batch: int, heads: int, steps: int, head_dim: int, like: torch.Tensor):
        shape = (layers, batch, heads, steps, head_dim)
        self.keys = like.new_empty(shape)
        self.values = like.new_empty(shape)
        self.length = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, steps: int = 1) -> None:
        self.length += steps

    def keep_rows(self, rows: torch.Tensor) -> None:
        self.keys = self.keys[:, rows]
        self.values = self.values[:, rows]

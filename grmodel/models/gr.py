"""Generative Regression: watch time as a generated sequence of time-slot tokens.

The encoder pools the user and item field embeddings and maps them through an FFN to one
memory vector ``h``. A post-LN transformer decoder with no positional encoding (as the
authors') generates tokens from ``<sos>``; the prediction is the sum over the emitted steps of
the windowed soft-argmax value (method.md). Two implementation facts keep it fast:

* With a single memory vector the cross-attention softmax runs over one key and is always 1,
  so each block's cross-attention output is ``W_o W_v h``: exact, computed once per row.
* Decoding keeps a key/value cache per layer, drops rows from the batch as they emit
  ``<eos>``, and stops when none is left.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grmodel.codec import LabelCodec
from grmodel.config import RunConfig
from grmodel.counted import median, quantiles
from grmodel.features import FeatureSchema
from grmodel.models.base import Batch, WatchTimeModel
from grmodel.models.embedding import FieldEmbedding, mlp
from grmodel.vocab import (
    EOS,
    N_SPECIAL,
    PAD,
    SOS,
    Vocabulary,
    build_vocabulary,
    build_vocabulary_from_counts,
)


def value_rank(vocab_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Each token id's position in ascending value order: ``<eos>`` (value 0) is 0, the smallest
    value token (the last id) 1, ..., the largest value token (id 3) ``vocab_size - 3``.
    ``<pad>`` and ``<sos>``, never generated, get -1."""
    ids = torch.arange(vocab_size, device=device)
    rank = torch.where(ids >= N_SPECIAL, vocab_size - ids, -1)
    return torch.where(ids == EOS, 0, rank)


def window_mask(logits: torch.Tensor, window: int, centre: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Boolean mask of eq. 11's window: the ``window + 1`` tokens nearest in value to the centre
    δ (default the argmax), [δ − window/2, δ + window/2] in value order, truncated at the ends.

    Value order is what eq. 11's id order stands for (token ids are sorted by value); the
    specials are not in it, except ``<eos>``, whose value 0 sits below the smallest token. A
    step that decodes ``<eos>`` decides "stop": its window is ``<eos>`` alone and the step is
    worth exactly 0, however the rest of the mass is spread (by id, ``<eos>`` neighbours the
    largest tokens, and a row whose answer is 0 could only be predicted as 0 with no mass on
    any of them). A ``<pad>``/``<sos>`` centre (an untrained model) also keeps only itself.
    """
    if centre is None:
        centre = logits.argmax(dim=-1)
    rank = value_rank(logits.shape[-1], logits.device)
    centre_rank = rank[centre].unsqueeze(-1)
    near = ((rank - centre_rank).abs() <= window // 2) & (rank >= 0)
    ids = torch.arange(logits.shape[-1], device=logits.device)
    return torch.where(centre_rank > 0, near, ids == centre.unsqueeze(-1))


def value_median(logits: torch.Tensor) -> torch.Tensor:
    """The token at the probability-weighted median of each step's distribution in value order.

    The first step's distribution is that of the largest token <= y, a monotone function of y,
    so its median is the token of y's conditional median (the MAE-optimal point), where the
    argmax is the mode. ``<eos>`` is chosen exactly when it holds half the mass or more.
    """
    vocab = logits.shape[-1]
    order = torch.cat([torch.tensor([EOS], device=logits.device),
                       torch.arange(vocab - 1, N_SPECIAL - 1, -1, device=logits.device)])
    probs = torch.softmax(logits.float(), dim=-1)[..., order]
    cum = probs.cumsum(dim=-1)
    position = (cum < 0.5 * cum[..., -1:]).sum(dim=-1).clamp(max=order.numel() - 1)
    return order[position]


def windowed_soft_argmax(logits: torch.Tensor, token_values: torch.Tensor, window: int,
                         centre: torch.Tensor | None = None) -> torch.Tensor:
    """Σ over eq. 11's window of softmax(logits)_k · value_k (scaled units; not renormalised)."""
    probs = torch.softmax(logits.float(), dim=-1)
    return (probs * window_mask(logits, window, centre) * token_values).sum(dim=-1)


def huber_unit(train_labels: np.ndarray) -> float:
    """The power of ten just below the train median's MAE: the label's typical error size.

    Huber reads labels in this unit, so its weight against the cross-entropy is the same
    whether the labels are seconds, milliseconds or dollars. On KuaiRec watch time (median
    MAE of a few seconds) it is 1 s, the unit of the paper's λ_huber = 1.
    """
    labels = np.asarray(train_labels, dtype=np.float64)
    spread = float(np.mean(np.abs(labels - np.median(labels)))) if labels.size else 0.0
    if not math.isfinite(spread) or spread <= 0:
        return 1.0
    return float(10.0 ** math.floor(math.log10(spread)))


def label_state_from_counts(values: np.ndarray, counts: np.ndarray, config: RunConfig
                            ) -> dict[str, Any]:
    """:meth:`GRModel.fit_label_state` of the training labels given as distinct ``values`` and
    their ``counts`` (what a distributed engine aggregates): the same vocabulary, decode length
    and length statistics; ``huber_unit`` from the same median and a mean summed in another
    order (a power of ten, so equal unless the spread sits on one)."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    vocab = build_vocabulary_from_counts(values, counts, config.vocab)
    _, lengths = LabelCodec(vocab).token_sequences(values)
    length, at = np.unique(lengths, return_inverse=True)
    per_length = np.bincount(at.ravel(), weights=counts).astype(np.int64)
    n = int(counts.sum())
    p50, p90, p99 = quantiles(length, per_length, np.array([0.5, 0.9, 0.99]))
    stats = {"n": n, "min": int(length.min()), "mean": float(int(np.dot(length, per_length)) / n),
             "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": int(length.max()),
             "histogram": {int(k): int(c) for k, c in zip(length, per_length) if c}}
    spread = float(np.dot(np.abs(values - median(values, counts)), counts) / n)
    unit = 10.0 ** math.floor(math.log10(spread)) if math.isfinite(spread) and spread > 0 else 1.0
    return {
        "vocab": vocab.to_dict(),
        "max_decode_len": int(config.model.max_decode_len or max(int(length.max()), 1)),
        "length_stats": stats,
        "huber_unit": config.train.huber_unit or float(unit),
    }


def teacher_forcing_probability(step: int, total_steps: int, cfg: Any) -> float:
    """The probability of feeding the ground-truth token at ``step`` (CLEM, method.md)."""
    schedule, p0, total = cfg.tf_schedule, cfg.tf_p0, max(total_steps, 1)
    if schedule == "none":
        return 1.0
    if schedule == "fixed":
        return cfg.tf_fixed_p
    if schedule == "linear":
        k = cfg.tf_k if cfg.tf_k is not None else p0 / total
        return max(0.0, p0 - k * step)
    if schedule == "exponential":
        k = cfg.tf_k if cfg.tf_k is not None else 0.01 ** (1.0 / total)
        return p0 * k**step
    # inverse sigmoid p0 * w / (w + e^(step/w)) == p0 * sigmoid(ln w - step/w): no overflow.
    omega = cfg.tf_omega if cfg.tf_omega is not None else _omega_for_midpoint(total / 2)
    x = math.log(omega) - step / omega
    return p0 / (1.0 + math.exp(-x)) if x >= 0 else p0 * math.exp(x) / (1.0 + math.exp(x))


def _omega_for_midpoint(half_steps: float) -> float:
    """ω with ω·ln ω = half_steps, so the inverse sigmoid crosses p0/2 at that step."""
    lo, hi = 1.0 + 1e-9, max(half_steps, 3.0)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid * math.log(mid) < half_steps else (lo, mid)
    return max(lo, 1.0 + 1e-6)


@contextlib.contextmanager
def _dropout_off(module: nn.Module) -> Iterator[None]:
    """Eval mode inside the block, then the module's previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with an optional preallocated key/value cache."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"model.d_model={d_model} must be divisible by model.n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.scale = (d_model // n_heads) ** -0.5

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        batch, steps, d_model = x.shape
        q, k, v = (
            t.view(batch, steps, self.n_heads, -1).transpose(1, 2)
            for t in self.qkv(x).split(d_model, dim=-1)
        )
        if cache is None:
            drop = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:  # one new step attends to every cached step, itself included
            k, v = cache.append(layer, k, v)
            # One query: plain broadcasting beats the fused kernel's per-call overhead on CPU.
            weights = torch.softmax((q * k).sum(dim=-1) * self.scale, dim=-1)  # [B, H, t]
            y = (weights.unsqueeze(-1) * v).sum(dim=2, keepdim=True)
        return self.out(y.transpose(1, 2).reshape(batch, steps, d_model))


class DecoderBlock(nn.Module):
    """Post-LN block: causal self-attention, cross-attention to one vector, FFN."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.cross_value = nn.Linear(d_model, d_model)
        self.cross_out = nn.Linear(d_model, d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model)
        )
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def cross(self, memory: torch.Tensor) -> torch.Tensor:
        """Cross-attention output for every step: softmax over a single key is 1."""
        return self.cross_out(self.cross_value(memory)).unsqueeze(1)  # [B, 1, D]

    def forward(
        self, x: torch.Tensor, cross: torch.Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.self_attn(x, cache, layer)))
        x = self.norm2(x + self.drop(cross))
        return self.norm3(x + self.drop(self.ffn(x)))


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


class GRModel(WatchTimeModel):
    name = "gr"

    @classmethod
    def fit_label_state(
        cls,
        train_labels: np.ndarray,
        config: RunConfig,
        train_ids: np.ndarray | None = None,
        schema: FeatureSchema | None = None,
    ) -> dict[str, Any]:
        vocab = build_vocabulary(train_labels, config.vocab)
        codec = LabelCodec(vocab)
        max_len = config.model.max_decode_len or codec.max_decode_len(train_labels)
        return {
            "vocab": vocab.to_dict(),
            "max_decode_len": int(max_len),
            "length_stats": codec.length_stats(train_labels),
            "huber_unit": config.train.huber_unit or huber_unit(train_labels),
        }

    def __init__(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]):
        super().__init__(schema, config, label_state)
        mc = config.model
        self.vocab = Vocabulary.from_dict(label_state["vocab"])
        self.codec = LabelCodec(self.vocab)
        self.max_decode_len = int(label_state["max_decode_len"])
        self.window = mc.window_size
        self.mixup = config.train.mixup
        self.mixup_window = config.train.mixup_window
        self.decode_rule = mc.decode
        # Checkpoints from before the unit was fitted trained with labels in their own unit.
        self.huber_unit = float(label_state.get("huber_unit", 1.0))
        self.embedding = FieldEmbedding(schema, mc.emb_dim)
        self.encoder = mlp(self.embedding.out_dim, mc.encoder_hidden, mc.d_model, mc.dropout)
        self.token_embedding = nn.Embedding(self.vocab.size, mc.d_model)
        self.blocks = nn.ModuleList(
            DecoderBlock(mc.d_model, mc.n_heads, mc.ffn_dim, mc.dropout) for _ in range(mc.n_layers)
        )
        self.head = nn.Linear(mc.d_model, self.vocab.size)
        values = torch.as_tensor(self.vocab.token_values(), dtype=torch.float32)
        self.register_buffer("token_values", values, persistent=False)
        self._init_weights(mc.init_range)

    def _init_weights(self, bound: float) -> None:
        # The paper's uniform(-0.08, 0.08) for weight matrices and tables; LayerNorm keeps its
        # identity init and biases start at zero (uniform LN gains would shrink every block).
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.uniform_(module.weight, -bound, bound)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    # -- training -----------------------------------------------------------------------
    def targets(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        return {"tokens": self.codec.encode(labels, max_len=self.max_decode_len).sequences}

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Memory vector h per row, turned into each block's cross-attention output."""
        memory = self.encoder(self.embedding(ids, mask))
        return [block.cross(memory) for block in self.blocks]

    def decode(self, inputs: torch.Tensor, cross: list[torch.Tensor]) -> torch.Tensor:
        """Logits for every step of a whole input-embedding sequence (causal)."""
        x = inputs
        for block, c in zip(self.blocks, cross):
            x = block(x, c)
        return self.head(x)

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """Each step's decoded token: the argmax (the paper) or the value median."""
        return value_median(logits) if self.decode_rule == "median" else logits.argmax(dim=-1)

    def step_value(self, logits: torch.Tensor) -> torch.Tensor:
        """The windowed soft-argmax value of each step, around the decoded token."""
        return windowed_soft_argmax(logits, self.token_values, self.window, self.choose(logits))

    def next_input(self, logits: torch.Tensor) -> torch.Tensor:
        """The embedding fed back for a predicted step: mixture or decoded token."""
        weight = self.token_embedding.weight
        if self.mixup == "none":
            return F.embedding(self.choose(logits), weight)
        if self.mixup == "full":
            return torch.softmax(logits.float(), dim=-1).to(weight.dtype) @ weight
        window = window_mask(logits, self.mixup_window, self.choose(logits))
        masked = logits.float().masked_fill(~window, float("-inf"))
        return torch.softmax(masked, dim=-1).to(weight.dtype) @ weight

    def loss(self, batch: Batch, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        tc = self.config.train
        tokens = batch["tokens"]
        # Sequences are padded to the longest training label; columns that are <pad> in every
        # row of this batch carry no target, and the causal mask makes cutting them exact.
        tokens = tokens[:, : int((tokens != PAD).sum(dim=1).max())]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        cross = self.encode(batch["ids"], batch["mask"])
        teacher = self.token_embedding(inputs)
        p_truth = teacher_forcing_probability(step, total_steps, tc)
        if p_truth >= 1.0:
            logits = self.decode(teacher, cross)
        else:
            # CLEM: pass 1 (teacher forced, in training mode) proposes each step's input; pass
            # 2 trains on a mix of ground truth and those proposals. With embedding mixup the
            # proposal is a probability-weighted embedding whose weights keep their gradient:
            # the paper's output-to-input path (§1, §3.5.2). An argmax proposal has none, so
            # its pass 1 keeps no graph. `train.clem_pass1=detached` is the faster variant
            # that cuts the path and runs pass 1 without dropout (not the paper's).
            if tc.clem_pass1 == "detached":
                with torch.no_grad(), _dropout_off(self):
                    proposals = self.decode(teacher, cross)[:, :-1]
            elif self.mixup == "none":
                with torch.no_grad():
                    proposals = self.decode(teacher, cross)[:, :-1]
            else:
                proposals = self.decode(teacher, cross)[:, :-1]
            fed_back = self.next_input(proposals)
            use_truth = torch.rand(fed_back.shape[:2], device=tokens.device) < p_truth
            mixed = torch.where(use_truth.unsqueeze(-1), teacher[:, 1:], fed_back)
            logits = self.decode(torch.cat([teacher[:, :1], mixed], dim=1), cross)
        # Eq. 6: cross-entropy summed over each row's target steps (<pad> ignored), Huber on
        # the row's windowed soft-argmax sum; both averaged over the rows of the batch. Huber
        # reads labels in `huber_unit`s (a power of ten fitted on the training labels, 1 s on
        # KuaiRec watch time), so the balance of the two terms does not depend on the unit.
        rows = tokens.shape[0]
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
            ignore_index=PAD, reduction="sum",
        ) / rows
        step_values = self.step_value(logits)
        y_hat = (step_values * (targets != PAD)).sum(dim=1) / self.vocab.label_scale
        unit = self.huber_unit
        huber = F.huber_loss(y_hat / unit, batch["label"].float() / unit, delta=tc.huber_delta)
        loss = tc.lambda_ce * ce + tc.lambda_huber * huber
        return loss, {"ce": ce.item(), "huber": huber.item(), "p_truth": p_truth}

    # -- inference ----------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.generate(ids, mask, use_cache=True)

    @torch.no_grad()
    def generate(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        use_cache: bool = True,
        return_tokens: bool = False,
        early_exit: bool = True,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding; returns the windowed soft-argmax sum per row in label units.

        With ``return_tokens`` also returns the argmax token ids per step (``<pad>`` after a
        row's ``<eos>``), shape [B, max_decode_len + 1], which the codec decodes.

        A row stops adding values once it emits ``<eos>`` (that step's value is counted, as in
        training). With ``early_exit`` ended rows leave the batch once half of it has ended
        (halving bounds the copying) and decoding stops when no row is left; without it every
        row runs all max_decode_len + 1 steps, as the authors' decoder does. ``use_cache=False``
        re-runs the decoder on the whole prefix each step. Both flags change speed only: the
        predictions are the same (tests and the speed benchmark use them).
        """
        cross = self.encode(ids, mask)
        batch = ids.shape[0]
        total = torch.zeros(batch, device=ids.device)
        rows = torch.arange(batch, device=ids.device)  # original index of each working row
        alive = torch.ones(batch, dtype=torch.bool, device=ids.device)  # no <eos> emitted yet
        x = self.token_embedding.weight[SOS].expand(batch, 1, -1)
        steps = self.max_decode_len + 1
        tokens = torch.full((batch, steps), PAD, dtype=torch.long, device=ids.device)
        cache, prefix = None, [x]
        if use_cache:
            first = self.blocks[0].self_attn
            head_dim = x.shape[-1] // first.n_heads
            cache = KVCache(len(self.blocks), batch, first.n_heads, steps, head_dim, x)
        for step in range(steps):
            if cache is not None:
                h = x
                for layer, (block, c) in enumerate(zip(self.blocks, cross)):
                    h = block(h, c, cache, layer)
                cache.advance()
                logits = self.head(h)[:, -1]
            else:
                logits = self.decode(torch.cat(prefix, dim=1), cross)[:, -1]
            total[rows] += self.step_value(logits) * alive
            chosen = self.choose(logits)
            tokens[rows[alive], step] = chosen[alive]
            alive = alive & (chosen != EOS)
            n_alive = int(alive.sum())
            if early_exit and n_alive == 0:
                break
            x = self.next_input(logits).unsqueeze(1)
            if early_exit and n_alive <= len(rows) // 2:
                keep = alive
                rows, x, alive, cross = rows[keep], x[keep], alive[keep], [c[keep] for c in cross]
                if cache is not None:
                    cache.keep_rows(keep)
                else:
                    prefix = [p[keep] for p in prefix]
            if cache is None:
                prefix.append(x)
        prediction = total / self.vocab.label_scale
        return (prediction, tokens) if return_tokens else prediction

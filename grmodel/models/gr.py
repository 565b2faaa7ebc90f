"""Generative Regression: watch time as a generated sequence of time-slot tokens.

The encoder pools the user and item field embeddings and maps them through an FFN to one
memory vector ``h``. A post-LN transformer decoder with no positional encoding (as the
authors') generates tokens from ``<sos>``; the prediction is the sum over the emitted steps of
the windowed soft-argmax value (docs/method.md). Two implementation facts keep it fast:

* With a single memory vector the cross-attention softmax runs over one key and is always 1,
  so each block's cross-attention output is ``W_o W_v h``: exact, computed once per row.
* Decoding keeps a key/value cache per layer, drops rows from the batch as they emit
  ``<eos>``, and stops when none is left.

Top-down: the model (:class:`GRModel`), its decoder layers, the decoding rule (eq. 11's
window), the label state fitted before training, and CLEM's teacher-forcing schedule. The CPU
speed pieces (short softmax, Dropout16, packing, the key/value cache) are in
grmodel/models/gr_speed.py.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grmodel import metrics
from grmodel.codec import LabelCodec
from grmodel.config import RunConfig
from grmodel.counted import median, quantiles
from grmodel.features import FeatureSchema
from grmodel.models.base import Batch, WatchTimeModel
from grmodel.models.embedding import ENCODER_POOLING, FieldEmbedding, mlp
from grmodel.models.gr_speed import Dropout16, KVCache, Packing, short_softmax
from grmodel.vocab import (
    EOS,
    N_SPECIAL,
    PAD,
    SOS,
    Vocabulary,
    build_vocabulary_from_counts,
    count_labels,
)


class GRModel(WatchTimeModel):
    """GR: field embeddings and an FFN encoder to one memory vector, a decoder that generates
    the label's tokens, the windowed soft-argmax sum as the prediction."""

    name = "gr"

    @classmethod
    def fit_label_state(
        cls,
        train_labels: np.ndarray,
        config: RunConfig,
        train_ids: np.ndarray | None = None,
        schema: FeatureSchema | None = None,
    ) -> dict[str, Any]:
        """The labels counted by value, then :func:`label_state_from_counts`: one fitting for
        an array here and for the counts a distributed engine aggregates."""
        return label_state_from_counts(*count_labels(train_labels), config)

    def __init__(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]):
        # A copy: calibration writes its decode level here, never into a caller's dict (the
        # pipeline hands every seed the same vocabulary).
        super().__init__(schema, config, dict(label_state))
        mc = config.model
        self.vocab = Vocabulary.from_dict(label_state["vocab"])
        self.codec = LabelCodec(self.vocab)
        self.max_decode_len = int(label_state["max_decode_len"])
        self.window = mc.window_size
        self.mixup = config.train.mixup
        self.mixup_window = config.train.mixup_window
        self.decode_rule = mc.decode
        self.zero_tie_break = mc.zero_tie_break
        # Checkpoints from before the unit was fitted trained with labels in their own unit.
        self.huber_unit = float(label_state.get("huber_unit", 1.0))
        self.embedding = FieldEmbedding(schema, mc.emb_dim, ENCODER_POOLING[mc.encoder])
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

    def decode_packed(self, inputs: torch.Tensor, cross: list[torch.Tensor], packing: Packing
                      ) -> torch.Tensor:
        """:meth:`decode` on the real steps alone: [N, D] input embeddings -> [N, V] logits."""
        x = inputs
        for block, c in zip(self.blocks, cross):
            x = block(x, c, packing=packing)
        return self.head(x)

    def choose(self, logits: torch.Tensor, level: float = 0.5) -> torch.Tensor:
        """Each step's decoded token: the argmax (the paper) or the value median (at ``level``)."""
        if self.decode_rule == "median":
            return value_median(logits, level)
        return logits.argmax(dim=-1)

    @property
    def decode_level(self) -> float:
        """The first decoding step's level: the one calibrated on the validation split (in the
        label state), else ``model.decode_level``, else the median's 0.5."""
        return self._reading("decode_level", 0.5)

    @property
    def decode_soft(self) -> float:
        """The weight of eq. 11's soft-argmax in a decoded step's value: the one calibrated on
        the validation split (in the label state), else ``model.decode_soft``, else the paper's
        1."""
        return self._reading("decode_soft", 1.0)

    def _reading(self, key: str, unset: float) -> float:
        """A decoding choice: calibrated (label state), else fixed (``model.<key>``), else
        ``unset``."""
        fixed = getattr(self.config.model, key)
        return float(self.label_state.get(key, unset if fixed is None else fixed))

    def step_value(self, logits: torch.Tensor, chosen: torch.Tensor | None = None) -> torch.Tensor:
        """The windowed soft-argmax value of each step, around the decoded token (``chosen``,
        when the caller has it already)."""
        chosen = self.choose(logits) if chosen is None else chosen
        return windowed_soft_argmax(logits, self.token_values, self.window, chosen)

    def next_input(self, logits: torch.Tensor, chosen: torch.Tensor | None = None) -> torch.Tensor:
        """The embedding fed back for a predicted step: mixture or decoded token."""
        weight = self.token_embedding.weight
        if self.mixup == "full":
            return torch.softmax(logits.float(), dim=-1).to(weight.dtype) @ weight
        chosen = self.choose(logits) if chosen is None else chosen
        if self.mixup == "none":
            return F.embedding(chosen, weight)
        window = window_mask(logits, self.mixup_window, chosen)
        masked = logits.float().masked_fill(~window, float("-inf"))
        return torch.softmax(masked, dim=-1).to(weight.dtype) @ weight

    def loss(self, batch: Batch, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        tc = self.config.train
        tokens = batch["tokens"]
        # Sequences are padded to the longest training label; columns that are <pad> in every
        # row of this batch carry no target, and the causal mask makes cutting them exact.
        tokens = tokens[:, : int((tokens != PAD).sum(dim=1).max())]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        # The decoder runs on the real steps only (Packing): the same losses as on the padded
        # grid, in about half the work.
        packing = Packing(targets != PAD)
        target = packing.pack(targets)
        cross = self.encode(batch["ids"], batch["mask"])
        teacher = self.token_embedding(packing.pack(inputs))
        p_truth = teacher_forcing_probability(step, total_steps, tc)
        if p_truth >= 1.0:
            logits = self.decode_packed(teacher, cross, packing)
        else:
            # CLEM: pass 1 (teacher forced, in training mode) proposes each step's input; pass
            # 2 trains on a mix of ground truth and those proposals. With embedding mixup the
            # proposal is a probability-weighted embedding whose weights keep their gradient:
            # the paper's output-to-input path (§1, §3.5.2). An argmax proposal has none, so
            # its pass 1 keeps no graph. `train.clem_pass1=detached` is the faster variant
            # that cuts the path and runs pass 1 without dropout (not the paper's).
            if tc.clem_pass1 == "detached":
                with torch.no_grad(), _dropout_off(self):
                    proposals = self.decode_packed(teacher, cross, packing)
            elif self.mixup == "none":
                with torch.no_grad():
                    proposals = self.decode_packed(teacher, cross, packing)
            else:
                proposals = self.decode_packed(teacher, cross, packing)
            # Step t's input is proposed by step t - 1 (the packed step before it in its row);
            # step 0 is always <sos>. A row's last proposal has no step to feed.
            fed_back = self.next_input(proposals)
            fed_back = torch.cat([fed_back[:1], fed_back[:-1]])
            use_truth = torch.rand(len(fed_back), device=tokens.device) < p_truth
            mixed = torch.where((use_truth | packing.first).unsqueeze(-1), teacher, fed_back)
            logits = self.decode_packed(mixed, cross, packing)
        # Eq. 6: cross-entropy summed over each row's target steps, Huber on the row's windowed
        # soft-argmax sum; both averaged over the rows of the batch. Huber reads labels in
        # `huber_unit`s (a power of ten fitted on the training labels, 1 s on KuaiRec watch
        # time), so the balance of the two terms does not depend on the unit.
        rows = tokens.shape[0]
        ce = F.cross_entropy(logits.float(), target, reduction="sum") / rows
        y_hat = packing.row_sums(self.step_value(logits)) / self.vocab.label_scale
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
        """Greedy decoding; returns each row's decoded value in label units: per step, the
        decoded token's value moved by ``decode_soft`` towards eq. 11's windowed soft-argmax
        (1, the paper's: the soft-argmax sum).

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
        total = torch.zeros(batch, device=ids.device)  # the soft-argmax sum (eq. 11)
        token_sum = torch.zeros(batch, device=ids.device)  # the decoded tokens' values
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
            chosen = self.choose(logits, self.decode_level if step == 0 else 0.5)
            if step == 0 and self.zero_tie_break:  # every row is still in the batch
                tie_break = self.zero_tie_value(logits, chosen)
            total[rows] += self.step_value(logits, chosen) * alive
            token_sum[rows] += self.token_values[chosen] * alive
            tokens[rows[alive], step] = chosen[alive]
            alive = alive & (chosen != EOS)
            n_alive = int(alive.sum())
            if early_exit and n_alive == 0:
                break
            x = self.next_input(logits, chosen).unsqueeze(1)
            if early_exit and n_alive <= len(rows) // 2:
                keep = alive
                rows, x, alive, cross = rows[keep], x[keep], alive[keep], [c[keep] for c in cross]
                if cache is not None:
                    cache.keep_rows(keep)
                else:
                    prefix = [p[keep] for p in prefix]
            if cache is None:
                prefix.append(x)
        # In float64: the tie-breaks are far below float32's resolution of a long token sum.
        token_sum, total = token_sum.double(), total.double()
        weight = self.decode_soft
        value = token_sum + weight * (total - token_sum)
        if weight == 0.0:
            value = value + self.sequence_tie_value(token_sum, total)
        if self.zero_tie_break:
            value = value + tie_break.double()
        prediction = value / self.vocab.label_scale
        return (prediction, tokens) if return_tokens else prediction

    def calibrate(self, predict: Callable[[], np.ndarray], valid_label: np.ndarray
                  ) -> dict[str, Any] | None:
        """Choose on the validation split how the decoded distribution is read
        (``model.decode_level`` and ``model.decode_soft``, each where it is null): the first
        step's level, from 0.5 in steps of 0.1 then 0.05 in whichever direction lowers the
        validation MAE, within [0.05, 0.95], for each soft-argmax weight of
        ``DECODE_SOFT_WEIGHTS``; then the pair of the lowest MAE. The median's 0.5 and the
        paper's weight 1 stay unless another choice is strictly better.

        The level decides which rows are 0 (``<eos>`` holds at least that mass) and where the
        first token sits; the weight, whether a step is worth its token's value (the value
        median's own point) or the window's probability-weighted sum. The training split's law
        fixes the model's probabilities; the validation split, which is later in time under a
        forward split, says where the MAE's optimum lies now (docs/deviations.md)."""
        chosen = self.config.model
        search_level = self.decode_rule == "median" and chosen.decode_level is None
        weights = DECODE_SOFT_WEIGHTS if chosen.decode_soft is None else (chosen.decode_soft,)
        if not search_level and len(weights) == 1:
            return None
        self.label_state.pop("decode_level", None)
        self.label_state.pop("decode_soft", None)
        tried: dict[float, dict[float, float]] = {}

        def read_at(level: float, weight: float) -> np.ndarray:
            self.label_state["decode_level"], self.label_state["decode_soft"] = level, weight
            return predict()

        def score(level: float, weight: float) -> float:
            if level not in tried:
                if len(weights) == 1:
                    tried[level] = {weights[0]: metrics.mae(valid_label, read_at(level, weights[0]))}
                else:  # the value is linear in the weight: two decodes give every blend
                    tokens, soft = read_at(level, 0.0), read_at(level, 1.0)
                    tried[level] = {w: metrics.mae(valid_label, tokens + w * (soft - tokens))
                                    for w in weights}
            return tried[level][weight]

        # A level search per weight (decodes are shared between them), the paper's weight
        # first; another weight wins only with a strictly lower MAE.
        best = None
        for weight in sorted(weights, reverse=True):
            level = 0.5 if chosen.decode_level is None else chosen.decode_level
            for step in ((0.1, 0.05) if search_level else ()):
                for direction in (-1, 1):
                    while 0.05 <= (nearby := round(level + direction * step, 2)) <= 0.95 and (
                            score(nearby, weight) < score(level, weight)):
                        level = nearby
            if best is None or score(level, weight) < score(*best):
                best = (level, weight)
        level, weight = best
        self.label_state["decode_level"], self.label_state["decode_soft"] = level, weight
        paper = tried.get(0.5, {}).get(1.0)
        return {"decode_level": level, "decode_soft": weight, "valid_mae": tried[level][weight],
                "valid_mae_at_0.5": paper,
                "tried": {f"{at:.2f}": {f"{w:g}": mae for w, mae in sorted(by_weight.items())}
                          for at, by_weight in sorted(tried.items())}}

    def sequence_tie_value(self, token_sum: torch.Tensor, soft_sum: torch.Tensor) -> torch.Tensor:
        """What a row read at its token sum adds to break ties with rows of the same sum
        (scaled units): less than ε (tie_epsilon), rising with its soft-argmax sum's excess
        over the token sum, so such rows are ranked by their soft value; 0 for rows decoded as
        0, which zero_tie_value ranks."""
        # A positive sum holds at least one token; the clamp only keeps 0-rows finite.
        excess = (soft_sum - token_sum) / token_sum.clamp_min(1.0)
        rank = 0.5 * self.tie_epsilon * (1.0 + torch.tanh(excess))
        return torch.where(token_sum > 0, rank, torch.zeros_like(rank))

    def zero_tie_value(self, first_logits: torch.Tensor, first_chosen: torch.Tensor
                       ) -> torch.Tensor:
        """What a row decoded as 0 adds to break its tie with the others (scaled units): ε times
        its first step's probability of a token other than ``<eos>``, ε a thousandth of the
        smallest token value; 0 for every other row."""
        nonzero = 1.0 - torch.softmax(first_logits.float(), dim=-1)[:, EOS]
        return torch.where(first_chosen == EOS, self.tie_epsilon * nonzero,
                           torch.zeros_like(nonzero))

    @property
    def tie_epsilon(self) -> float:
        """ε of the tie-breaks (scaled units): a thousandth of the smallest token value, so that
        a tie-break never reaches the next token."""
        values = self.token_values[N_SPECIAL:]
        return 1e-3 * float(values.min()) if values.numel() else 0.0


# -- the decoder's layers --------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with an optional preallocated key/value cache."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"model.d_model={d_model} must be divisible by model.n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.attn_drop = Dropout16(dropout)
        self.scale = (d_model // n_heads) ** -0.5

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                packing: Packing | None = None) -> torch.Tensor:
        if packing is not None:
            return self._packed(x, packing)
        batch, steps, d_model = x.shape
        q, k, v = (
            t.view(batch, steps, self.n_heads, -1).transpose(1, 2)
            for t in self.qkv(x).split(d_model, dim=-1)
        )
        if cache is None:
            drop = self.attn_drop.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:  # one new step attends to every cached step, itself included
            k, v = cache.append(layer, k, v)
            # One query: plain broadcasting beats the fused kernel's per-call overhead on CPU.
            weights = short_softmax((q * k).sum(dim=-1).float() * self.scale)  # [B, H, t]
            weights = weights.to(v.dtype)
            y = (weights.unsqueeze(-1) * v).sum(dim=2, keepdim=True)
        return self.out(y.transpose(1, 2).reshape(batch, steps, d_model))

    def _packed(self, x: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Real steps [N, D] -> [N, D]; queries, keys and values on the [B, H, T, head] grid,
        zeros at the padding (which the causal mask hides from every real step)."""
        n, d_model = x.shape
        head = d_model // self.n_heads
        qkv = self.qkv(x)
        grid = qkv.new_zeros(3, packing.rows, self.n_heads, packing.steps, head)
        grid[:, packing.row, :, packing.step] = qkv.view(n, 3, self.n_heads, head)
        q, k, v = grid.unbind(0)
        if self.training and self.attn_drop.p > 0:
            # By hand, to drop attention weights with Dropout16: the fused kernel's dropout
            # draws the slow way. The softmax runs in float32, as autocast runs torch's.
            weights = (q @ k.transpose(-2, -1)).float() * self.scale
            weights = short_softmax(weights.masked_fill(packing.causal, float("-inf")))
            y = self.attn_drop(weights).to(v.dtype) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2)[packing.row, packing.step].reshape(n, d_model))


class DecoderBlock(nn.Module):
    """Post-LN block: causal self-attention, cross-attention to one vector, FFN."""

    def __init__(self, d_model: int, n_heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.cross_value = nn.Linear(d_model, d_model)
        self.cross_out = nn.Linear(d_model, d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim), nn.ReLU(), Dropout16(dropout), nn.Linear(ffn_dim, d_model)
        )
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.drop = Dropout16(dropout)

    def cross(self, memory: torch.Tensor) -> torch.Tensor:
        """Cross-attention output for every step: softmax over a single key is 1."""
        return self.cross_out(self.cross_value(memory)).unsqueeze(1)  # [B, 1, D]

    def forward(
        self, x: torch.Tensor, cross: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
        packing: Packing | None = None,
    ) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.self_attn(x, cache, layer, packing)))
        cross = self.drop(cross)  # one dropout mask per row, shared by its steps
        # index_select, not cross[packing.row]: indexing's backward adds the steps' gradients
        # into their row with atomic adds from several threads, whose order (and so the
        # float sum) changed from run to run under load; index_select's backward is serial.
        x = self.norm2(x + (cross.squeeze(1).index_select(0, packing.row) if packing is not None
                            else cross))
        return self.norm3(x + self.drop(self.ffn(x)))


# -- decoding: eq. 11's window ---------------------------------------------------------------
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


# The soft-argmax weights GRModel.calibrate chooses among (model.decode_soft: null): the decoded
# token's value (0), blends, and eq. 11's windowed soft-argmax (1, the paper's).
DECODE_SOFT_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def value_median(logits: torch.Tensor, level: float = 0.5) -> torch.Tensor:
    """The token at the probability-weighted median of each step's distribution in value order
    (at ``level``: its ``level`` quantile).

    The first step's distribution is that of the largest token <= y, a monotone function of y,
    so its median is the token of y's conditional median (the MAE-optimal point), where the
    argmax is the mode. ``<eos>`` is chosen exactly when it holds half the mass (``level``) or
    more.
    """
    vocab = logits.shape[-1]
    order = torch.cat([torch.tensor([EOS], device=logits.device),
                       torch.arange(vocab - 1, N_SPECIAL - 1, -1, device=logits.device)])
    probs = torch.softmax(logits.float(), dim=-1)[..., order]
    cum = probs.cumsum(dim=-1)
    position = (cum < level * cum[..., -1:]).sum(dim=-1).clamp(max=order.numel() - 1)
    return order[position]


def windowed_soft_argmax(logits: torch.Tensor, token_values: torch.Tensor, window: int,
                         centre: torch.Tensor | None = None) -> torch.Tensor:
    """Σ over eq. 11's window of softmax(logits)_k · value_k (scaled units; not renormalised)."""
    probs = torch.softmax(logits.float(), dim=-1)
    return (probs * window_mask(logits, window, centre) * token_values).sum(dim=-1)


# -- the label state, fitted on the training labels before training -------------------------
def label_state_from_counts(values: np.ndarray, counts: np.ndarray, config: RunConfig
                            ) -> dict[str, Any]:
    """GR's label state from the training labels given as distinct ``values`` and their
    ``counts``: the vocabulary, the decode length (``model.max_decode_len``, else the longest
    sequence), the sequence-length statistics and the Huber unit."""
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
    return {
        "vocab": vocab.to_dict(),
        "max_decode_len": int(config.model.max_decode_len or max(int(length.max()), 1)),
        "length_stats": stats,
        "huber_unit": config.train.huber_unit or huber_unit(values, counts),
    }


def huber_unit(values: np.ndarray, counts: np.ndarray) -> float:
    """The power of ten just below the train median's MAE (labels as distinct ``values`` and
    their ``counts``): the label's typical error size.

    Huber reads labels in this unit, so its weight against the cross-entropy is the same
    whether the labels are seconds, milliseconds or dollars. On KuaiRec watch time (median
    MAE of a few seconds) it is 1 s, the unit of the paper's λ_huber = 1.
    """
    n = int(counts.sum())
    spread = float(np.dot(np.abs(values - median(values, counts)), counts) / n) if n else 0.0
    if not math.isfinite(spread) or spread <= 0:
        return 1.0
    return float(10.0 ** math.floor(math.log10(spread)))


# -- CLEM's teacher forcing ------------------------------------------------------------------
def teacher_forcing_probability(step: int, total_steps: int, cfg: Any) -> float:
    """The probability of feeding the ground-truth token at ``step`` (docs/method.md, CLEM)."""
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

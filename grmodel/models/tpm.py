"""TPM, tree-based progressive regression (Lin et al., KDD 2023; docs/baselines.md, TPM).

The label range is cut into L = 2**depth equal-frequency leaves. A complete binary tree over
the leaves (heap order: node h has children 2h and 2h+1, the root is 1) has one sigmoid
output per internal node: P(go right | node reached, x), where "right" means y is at or above
the first boundary of the node's right half. A leaf's probability is the product of the
branch probabilities on its path, computed as a sum of log-sigmoids. The prediction is
E = Σ P(leaf)·mid(leaf) and the uncertainty Var = Σ P·mid² − E² (the authors' code squares E
instead of the midpoints, which makes it ≈ 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from grmodel.config import RunConfig
from grmodel.features import FeatureSchema
from grmodel.models.base import Batch, reproducible_exp
from grmodel.models.heads import (
    DEFAULT_DURATION_FIELD,
    BaselineModel,
    check_option,
    grouped_quantiles,
    row_groups,
)


@dataclass(frozen=True)
class TPMOptions:
    """``head.tpm_depth`` (4: 16 leaves; 5: 32), loss weights ``head.tpm_w_mse`` (0.2) and
    ``head.tpm_w_var`` (1.0). ``head.tpm_per_duration``: leaf percentiles within
    ``head.tpm_groups`` (50) duration groups of ``head.duration_field``, with the group fed
    to the model as an input (off by default).

    The √Var term is in label units and, unlike in the authors' code (where Var ≈ 0), really
    acts: with w_var = 1 on watch times of a few seconds it first pulls every row into one
    leaf, and short runs can end before TPM recovers; lower w_var if validation MAE stalls.
    """

    depth: int = 4
    w_mse: float = 0.2
    w_var: float = 1.0
    per_duration: bool = False
    groups: int = 50
    duration_field: str = DEFAULT_DURATION_FIELD

    def __post_init__(self) -> None:
        check_option(1 <= self.depth <= 12, "tpm", "depth", self.depth, "must be in [1, 12]")
        check_option(self.groups >= 1, "tpm", "groups", self.groups, "must be >= 1")


def tree_tables(depth: int) -> dict[str, np.ndarray]:
    """Per internal node (output h - 1 for heap id h): its leaf range [lo, hi) and the first
    leaf of its right half; per leaf: the nodes on its path and the turn taken at each (+1
    right, -1 left)."""
    leaves = 2**depth
    heap = np.arange(1, leaves)
    level = np.floor(np.log2(heap)).astype(np.int64)
    span = leaves // 2**level
    lo = (heap - 2**level) * span
    path_nodes = np.empty((leaves, depth), dtype=np.int64)
    path_turns = np.empty((leaves, depth), dtype=np.float32)
    for leaf in range(leaves):
        node = leaves + leaf
        for d in range(depth):
            path_nodes[leaf, d] = node // 2 - 1
            path_turns[leaf, d] = 1.0 if node % 2 else -1.0
            node //= 2
    return {"lo": lo, "mid": lo + span // 2, "hi": lo + span,
            "path_nodes": path_nodes, "path_turns": path_turns}


def leaf_log_probs(logits: torch.Tensor, path_nodes: torch.Tensor,
                   path_turns: torch.Tensor) -> torch.Tensor:
    """log P(leaf) [B, L] from node logits [B, L - 1]: Σ log σ(±z) along each leaf's path.

    Gathers and sums in float32 (no matmul, so bf16 autocast cannot round the products).
    """
    return F.logsigmoid(logits[:, path_nodes] * path_turns).sum(dim=-1)


def moments(probs: torch.Tensor, mids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E = Σ P·mid and Var = Σ P·mid² − E² (clamped at 0 against rounding), each [B]."""
    mean = (probs * mids).sum(dim=-1)
    var = ((probs * mids.square()).sum(dim=-1) - mean.square()).clamp_min(0.0)
    return mean, var


class TPMModel(BaselineModel):
    name = "tpm"
    Options = TPMOptions

    @classmethod
    def fit_label_state(
        cls, train_labels: np.ndarray, config: RunConfig,
        train_ids: np.ndarray | None = None, schema: FeatureSchema | None = None,
    ) -> dict[str, Any]:
        options = cls.parse_options(config)
        labels = np.asarray(train_labels, dtype=np.float64)
        levels = np.linspace(0.0, 1.0, 2**options.depth + 1)
        group_of_id = None
        if options.per_duration:
            group_of_id, groups, n_groups = row_groups(
                train_ids, schema, options.duration_field, options.groups, cls.name
            )
            boundaries = grouped_quantiles(labels, groups, n_groups, levels)
        else:
            boundaries = np.quantile(labels, levels)[None, :]
        return {
            **cls.options_state(options),
            "group_of_id": group_of_id,
            # [1 or G + 1, L + 1]: leaf l of a row's group is [b_l, b_{l+1})
            "leaf_boundaries": boundaries.tolist(),
        }

    @classmethod
    def label_state_fields(cls, config: RunConfig) -> tuple[str, ...]:
        # Only per-duration leaves read the duration field.
        return super().label_state_fields(config) if cls.parse_options(config).per_duration else ()

    def __init__(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]):
        leaves = len(label_state["leaf_boundaries"][0]) - 1
        super().__init__(schema, config, label_state, n_outputs=leaves - 1,
                         group_of_id=label_state["group_of_id"])
        boundaries = torch.tensor(label_state["leaf_boundaries"], dtype=torch.float32)
        self.register_buffer("boundaries", boundaries, persistent=False)
        for key, table in tree_tables(self.options.depth).items():
            self.register_buffer(key, torch.as_tensor(table), persistent=False)

    def row_boundaries(self, ids: torch.Tensor) -> torch.Tensor:
        """Leaf boundaries [B, L + 1] of each row (its duration group's, or the global ones)."""
        if self.duration is None:
            return self.boundaries.expand(ids.shape[0], -1)
        return self.boundaries[self.duration.group(ids)]

    def leaf_distribution(self, ids: torch.Tensor, mask: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(node logits [B, L - 1], leaf probabilities [B, L], leaf midpoints [B, L])."""
        logits = self.outputs(ids, mask)
        probs = reproducible_exp(leaf_log_probs(logits, self.path_nodes, self.path_turns))
        bounds = self.row_boundaries(ids)
        return logits, probs, (bounds[:, :-1] + bounds[:, 1:]) / 2

    def node_targets(self, y: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reached, go_right), each [B, L - 1] in {0, 1}: the nodes whose range holds y (the
        `depth` nodes on the path to y's leaf) and whether y is in their right half."""
        inner = self.row_boundaries(ids)[:, 1:-1]
        leaf = (inner <= y[:, None]).sum(dim=1, keepdim=True)  # [B, 1]
        reached = (self.lo <= leaf) & (leaf < self.hi)
        return reached.float(), (leaf >= self.mid).float()

    def loss(self, batch: Batch, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        y = batch["label"].float()
        logits, probs, mids = self.leaf_distribution(batch["ids"], batch["mask"])
        reached, go_right = self.node_targets(y, batch["ids"])
        bce = F.binary_cross_entropy_with_logits(logits, go_right, reduction="none")
        node_bce = (bce * reached).sum() / reached.sum()
        mean, var = moments(probs, mids)
        mse = (y - mean).square().mean()
        spread = var.clamp_min(1e-12).sqrt().mean()
        o = self.options
        loss = node_bce + o.w_mse * mse + o.w_var * spread
        return loss, {"node_bce": node_bce.item(), "mse": mse.item(), "std": spread.item()}

    @torch.no_grad()
    def predict(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.predict_with_variance(ids, mask)[0].clamp_min(0.0)

    @torch.no_grad()
    def predict_with_variance(self, ids: torch.Tensor, mask: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(E, Var) per row: the prediction and TPM's uncertainty, label units (squared)."""
        _, probs, mids = self.leaf_distribution(ids, mask)
        return moments(probs, mids)

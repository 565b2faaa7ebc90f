"""D2Q, duration-deconfounded quantile regression (Zhan et al., KDD 2022; docs/baselines.md,
D2Q).

Rows fall into K equal-frequency duration groups (of the duration-bucket field's ids, see
``heads.fit_duration_groups``). The model regresses, with a sigmoid and MSE, the label's
quantile within its group's training distribution, and predicts the group's quantile table
read at the predicted quantile: a value in label units, used for MAE and XAUC alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from grmodel.config import RunConfig
from grmodel.features import FeatureSchema
from grmodel.models.base import Batch
from grmodel.models.heads import (
    DEFAULT_DURATION_FIELD,
    BaselineModel,
    check_option,
    grouped_quantiles,
    row_groups,
)


@dataclass(frozen=True)
class D2QOptions:
    """``head.d2q_groups`` K (50), ``head.d2q_levels`` quantile levels per table (101: 0,
    0.01, …, 1), ``head.duration_field`` the categorical duration-bucket field."""

    groups: int = 50
    levels: int = 101
    duration_field: str = DEFAULT_DURATION_FIELD

    def __post_init__(self) -> None:
        check_option(self.groups >= 1, "d2q", "groups", self.groups, "must be >= 1")
        check_option(self.levels >= 2, "d2q", "levels", self.levels, "must be >= 2")


def quantile_of(y: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Each y's quantile in [0, 1] within its row of ``tables`` [B, n] (levels 0..1, even).

    Linear interpolation between levels; a y equal to several table entries (a label atom
    such as 0) gets the middle of their levels, so ties do not bias the target.
    """
    n = tables.shape[1]
    below = (tables < y[:, None]).sum(dim=1)
    at_or_below = (tables <= y[:, None]).sum(dim=1)
    tied = (below + at_or_below - 1) / 2
    left = tables.gather(1, (below - 1).clamp(0, n - 1)[:, None])[:, 0]
    right = tables.gather(1, below.clamp(0, n - 1)[:, None])[:, 0]
    fraction = ((y - left) / (right - left).clamp_min(1e-12)).clamp(0.0, 1.0)
    position = torch.where(at_or_below > below, tied, below - 1 + fraction)
    return position.clamp(0, n - 1) / (n - 1)


def value_at(q: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Each row's table read at quantile q in [0, 1] (linear interpolation)."""
    n = tables.shape[1]
    position = q * (n - 1)
    lower = position.floor().long().clamp(0, n - 2)
    fraction = position - lower
    low = tables.gather(1, lower[:, None])[:, 0]
    high = tables.gather(1, (lower + 1)[:, None])[:, 0]
    return low + fraction * (high - low)


class D2QModel(BaselineModel):
    name = "d2q"
    Options = D2QOptions

    @classmethod
    def fit_label_state(
        cls, train_labels: np.ndarray, config: RunConfig,
        train_ids: np.ndarray | None = None, schema: FeatureSchema | None = None,
    ) -> dict[str, Any]:
        options = cls.parse_options(config)
        labels = np.asarray(train_labels, dtype=np.float64)
        group_of_id, groups, n_groups = row_groups(
            train_ids, schema, options.duration_field, options.groups, cls.name
        )
        levels = np.linspace(0.0, 1.0, options.levels)
        tables = grouped_quantiles(labels, groups, n_groups, levels)
        return {
            **cls.options_state(options),
            "group_of_id": group_of_id,
            "quantile_tables": tables.tolist(),  # [G + 1, levels]; last row: all training rows
        }

    def __init__(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]):
        super().__init__(schema, config, label_state, n_outputs=1,
                         group_of_id=label_state["group_of_id"])
        tables = torch.tensor(label_state["quantile_tables"], dtype=torch.float32)
        self.register_buffer("quantile_tables", tables, persistent=False)

    def group_tables(self, ids: torch.Tensor) -> torch.Tensor:
        """The quantile table of each row's duration group, [B, levels]."""
        assert self.duration is not None
        return self.quantile_tables[self.duration.group(ids)]

    def loss(self, batch: Batch, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        q_hat = torch.sigmoid(self.outputs(batch["ids"], batch["mask"])[:, 0])
        q = quantile_of(batch["label"].float(), self.group_tables(batch["ids"]))
        loss = F.mse_loss(q_hat, q)
        return loss, {"mse_quantile": loss.item()}

    @torch.no_grad()
    def predict(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q_hat = torch.sigmoid(self.outputs(ids, mask)[:, 0])
        return value_at(q_hat, self.group_tables(ids)).clamp_min(0.0)

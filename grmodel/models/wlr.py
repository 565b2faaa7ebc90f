"""WLR, weighted logistic regression (Covington et al., 2016; docs/baselines.md, WLR).

Each row is a positive weighted by its watch time T and a negative weighted 1, so the logit's
optimum is log E[T | x] and the prediction is the odds exp(z). The "valid views" variant
counts only rows with label ≥ τ as (T-weighted) positives and the rest as negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from grmodel.config import RunConfig
from grmodel.features import FeatureSchema
from grmodel.models.base import Batch
from grmodel.models.heads import BaselineModel


@dataclass(frozen=True)
class WLROptions:
    """``head.wlr_variant``: all_views (default) or valid_views.

    ``head.wlr_valid_threshold``: τ in label units for valid_views; None = the training
    median. The batch holds the label only, so "watch ratio ≥ τ" is the paper's rule when the
    label is the watch ratio; for watch-time labels τ is a minimum watch time. The valid-views
    odds estimate E[T·1(valid)] / P(not valid), which is near E[T] only when valid views are
    rare.
    """

    variant: Literal["all_views", "valid_views"] = "all_views"
    valid_threshold: float | None = None


class WLRModel(BaselineModel):
    name = "wlr"
    Options = WLROptions

    @classmethod
    def fit_label_state(
        cls, train_labels: np.ndarray, config: RunConfig,
        train_ids: np.ndarray | None = None, schema: FeatureSchema | None = None,
    ) -> dict[str, Any]:
        options = cls.parse_options(config)
        tau = options.valid_threshold
        if tau is None:
            tau = float(np.median(train_labels))
        return {**cls.options_state(options), "valid_threshold": tau}

    def __init__(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]):
        super().__init__(schema, config, label_state, n_outputs=1)
        self.valid_threshold = float(label_state["valid_threshold"])

    def loss(self, batch: Batch, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        z = self.outputs(batch["ids"], batch["mask"])[:, 0]
        t = batch["label"].float()
        if self.options.variant == "valid_views":
            valid = t >= self.valid_threshold
            positive_weight, negative_weight = torch.where(valid, t, 0.0), (~valid).float()
        else:
            positive_weight, negative_weight = t, torch.ones_like(t)
        # −w⁺·log σ(z) − w⁻·log(1 − σ(z)), with log(1 − σ(z)) = log σ(−z) for stability
        loss = (-positive_weight * F.logsigmoid(z) - negative_weight * F.logsigmoid(-z)).mean()
        return loss, {"wlr": loss.item()}

    @torch.no_grad()
    def predict(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.outputs(ids, mask)[:, 0])

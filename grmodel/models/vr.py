"""VR, value regression: the MLP regresses the label directly (docs/baselines.md, VR)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from grmodel.config import RunConfig
from grmodel.features import FeatureSchema
from grmodel.models.base import Batch
from grmodel.models.heads import BaselineModel


@dataclass(frozen=True)
class VROptions:
    """``head.vr_loss``: mse (default) or mae; ``head.vr_target``: raw label or log1p(label)."""

    loss: Literal["mse", "mae"] = "mse"
    target: Literal["raw", "log1p"] = "raw"


class VRModel(BaselineModel):
    name = "vr"
    Options = VROptions

    def __init__(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]):
        super().__init__(schema, config, label_state, n_outputs=1)

    def loss(self, batch: Batch, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.outputs(batch["ids"], batch["mask"])[:, 0]
        y = batch["label"].float()
        target = torch.log1p(y) if self.options.target == "log1p" else y
        fn = F.mse_loss if self.options.loss == "mse" else F.l1_loss
        loss = fn(out, target)
        return loss, {self.options.loss: loss.item()}

    @torch.no_grad()
    def predict(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.outputs(ids, mask)[:, 0]
        value = torch.expm1(out) if self.options.target == "log1p" else out
        return value.clamp_min(0.0)

"""CREAD, classification-restoration with error-adaptive discretisation (Sun et al., AAAI
2024; docs/baselines.md, CREAD).

Thresholds 0 = t_0 < t_1 < … < t_M cut the label range; M sigmoid heads classify whether
y exceeds a threshold, and the restoration ŷ = Σ_m φ_m·(t_m − t_{m−1}) is a discretised
∫ P(y > t) dt. Head m classifies y > t_m ("upper", the formula as written) or y > t_{m−1}
("lower": φ at the lower end of each interval). The thresholds are t_m = Ψ⁻¹(γ(m/M)), with
Ψ the training-label CDF and γ(z) = (1 − e^{−αz}) / (1 − e^{−α}); α minimises the
within-interval plus β × between-interval error bound over a fixed grid.
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
from grmodel.models.heads import BaselineModel, check_option


@dataclass(frozen=True)
class CREADOptions:
    """``head.cread_M`` thresholds (50); α: ``head.cread_alpha`` fixes it, else the grid
    ``cread_alpha_min + k·cread_alpha_step``, k < ``cread_alpha_count`` (0.001, 0.101, …,
    4.901) is searched with ``head.cread_beta`` (50); ``head.cread_restoration`` upper |
    lower; loss weights ``head.cread_w_r`` (1) on Huber(ŷ, y) with ``cread_huber_delta`` (1)
    and ``head.cread_w_o`` (2e-5) on the monotonicity penalty."""

    M: int = 50
    alpha: float | None = None
    alpha_min: float = 0.001
    alpha_step: float = 0.1
    alpha_count: int = 50
    beta: float = 50.0
    restoration: Literal["upper", "lower"] = "upper"
    w_r: float = 1.0
    w_o: float = 2e-5
    huber_delta: float = 1.0

    def __post_init__(self) -> None:
        check_option(self.M >= 1, "cread", "M", self.M, "must be >= 1")
        check_option(self.alpha is None or self.alpha > 0, "cread", "alpha", self.alpha,
                     "must be > 0 (or None for the grid search)")
        check_option(self.alpha_min > 0 and self.alpha_step >= 0, "cread", "alpha_min",
                     self.alpha_min, "the grid needs alpha_min > 0 and alpha_step >= 0")
        check_option(self.alpha_count >= 1, "cread", "alpha_count", self.alpha_count,
                     "must be >= 1")

    def alpha_grid(self) -> np.ndarray:
        return self.alpha_min + self.alpha_step * np.arange(self.alpha_count)


def gamma(z: np.ndarray, alpha: float) -> np.ndarray:
    """(1 − e^{−αz}) / (1 − e^{−α}): the identity as α → 0, concave (toward 1) as α grows."""
    return np.clip(np.expm1(-alpha * z) / np.expm1(-alpha), 0.0, 1.0)


def adaptive_thresholds(sorted_labels: np.ndarray, m: int, alpha: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(t_0..t_M, γ_0..γ_M): t_m = Ψ⁻¹(γ(m/M)) (linear-interpolated quantile), t_0 = 0."""
    gammas = gamma(np.arange(m + 1) / m, alpha)
    n = len(sorted_labels)
    thresholds = np.interp(gammas * (n - 1), np.arange(n), sorted_labels)
    thresholds[0] = 0.0
    return thresholds, gammas


def discretisation_cost(thresholds: np.ndarray, gammas: np.ndarray, beta: float) -> float:
    """A_w + β·A_b with A_w = ΣΔψ²·Σ(Δt²/Δψ) and A_b = ΣΔψ²·ΣΔt²."""
    d_psi, d_t = np.diff(gammas), np.diff(thresholds)
    scale = np.sum(d_psi**2)
    return float(scale * np.sum(d_t**2 / d_psi) + beta * scale * np.sum(d_t**2))


def search_alpha(sorted_labels: np.ndarray, options: CREADOptions) -> tuple[float, list[float]]:
    """(chosen α, cost per grid α): the grid's minimiser, the first one on ties."""
    grid = options.alpha_grid()
    costs = [discretisation_cost(*adaptive_thresholds(sorted_labels, options.M, a), options.beta)
             for a in grid]
    return float(grid[int(np.argmin(costs))]), costs


class CREADModel(BaselineModel):
    name = "cread"
    Options = CREADOptions

    @classmethod
    def fit_label_state(
        cls, train_labels: np.ndarray, config: RunConfig,
        train_ids: np.ndarray | None = None, schema: FeatureSchema | None = None,
    ) -> dict[str, Any]:
        options = cls.parse_options(config)
        sorted_labels = np.sort(np.asarray(train_labels, dtype=np.float64))
        if len(sorted_labels) == 0 or sorted_labels[-1] <= 0:
            raise ValueError("cread: the training labels have no value above 0, so no threshold"
                             " t_1 > t_0 = 0 exists (rule: CREAD needs positive labels)")
        costs = None
        alpha = options.alpha
        if alpha is None:
            alpha, costs = search_alpha(sorted_labels, options)
        thresholds, _ = adaptive_thresholds(sorted_labels, options.M, alpha)
        # Label atoms (many 0s, rounded values) repeat thresholds: merge them, so the heads
        # see strictly increasing thresholds and the effective M may fall below cread_M.
        return {
            **cls.options_state(options),
            "alpha": alpha,
            "alpha_costs": costs,
            "thresholds": np.unique(thresholds).tolist(),
        }

    def __init__(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]):
        thresholds = torch.tensor(label_state["thresholds"], dtype=torch.float32)
        super().__init__(schema, config, label_state, n_outputs=len(thresholds) - 1)
        upper = self.options.restoration == "upper"
        self.register_buffer("head_thresholds", thresholds[1:] if upper else thresholds[:-1],
                             persistent=False)
        self.register_buffer("widths", thresholds.diff(), persistent=False)

    def restore(self, phi: torch.Tensor) -> torch.Tensor:
        """ŷ = Σ_m φ_m·(t_m − t_{m−1}), [B]."""
        return (phi * self.widths).sum(dim=-1)

    def loss(self, batch: Batch, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        y = batch["label"].float()
        logits = self.outputs(batch["ids"], batch["mask"])
        exceeds = (y[:, None] > self.head_thresholds).float()
        bce = F.binary_cross_entropy_with_logits(logits, exceeds, reduction="none").mean(0).sum()
        phi = torch.sigmoid(logits)
        huber = F.huber_loss(self.restore(phi), y, delta=self.options.huber_delta)
        # φ must not increase with the threshold: penalise every rise.
        rises = F.relu(phi[:, 1:] - phi[:, :-1]).sum(dim=-1).mean()
        o = self.options
        loss = bce + o.w_r * huber + o.w_o * rises
        return loss, {"bce": bce.item(), "huber": huber.item(), "monotonicity": rises.item()}

    @torch.no_grad()
    def predict(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.restore(torch.sigmoid(self.outputs(ids, mask)))

"""Did a training run learn anything? The verdict every trained model carries.

A model can finish training with a falling loss and still predict (almost) one value for every
row, or rank and place rows no better than the training median does. Such a model must not look
like a success: the trainer records this verdict in the checkpoint, fails the run when
``train.on_collapse=fail`` (the default), the reports mark the row and the registry gate never
promotes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from grmodel import metrics

# "No better than the median": the median's MAE or worse, and a ranking within this margin of
# a coin flip (tie-aware XAUC, so a constant scores exactly 0.5).
XAUC_MARGIN = 0.01
# Near-constant: a prediction spread at most this share of the labels' (train.collapse_std_ratio).
DEFAULT_STD_RATIO = 0.01


class ModelCollapsed(ValueError):
    """A trained model whose validation predictions carry no information (names the rule)."""


@dataclass(frozen=True)
class CollapseVerdict:
    collapsed: bool
    reason: str  # empty when not collapsed
    pred_std: float
    label_std: float
    mae: float
    median_mae: float
    xauc_tie_aware: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def near_constant(pred_std: float, label_std: float, std_ratio: float = DEFAULT_STD_RATIO
                  ) -> str | None:
    """Why predictions of spread ``pred_std`` look constant next to labels of spread
    ``label_std`` (the one rule, used by the trainer and the reports), or None."""
    if label_std > 0 and pred_std <= std_ratio * label_std:
        return (f"near-constant predictions: std {pred_std:.4g} against the labels' "
                f"{label_std:.4g} (rule: std >= {std_ratio:g} x label std)")
    return None


def judge(predictions: np.ndarray, labels: np.ndarray, train_median: float,
          std_ratio: float = DEFAULT_STD_RATIO) -> CollapseVerdict:
    """The verdict on validation ``predictions`` against the constant ``train_median``."""
    pred = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    pred_std, label_std = float(pred.std()), float(y.std())
    mae = metrics.mae(y, pred)
    median_mae = metrics.mae(y, np.full_like(y, train_median))
    xauc = metrics.xauc(y, pred, variant="tie_aware")
    reason = near_constant(pred_std, label_std, std_ratio) or ""
    if not reason and label_std == 0:
        reason = (f"the validation labels are constant ({y[0]:g}): nothing to rank, and a model"
                  " of them learns that constant (rule: a label that varies)")
    # NaN (no pair to rank) fails the ranking test too.
    if not reason and mae >= median_mae and not xauc > 0.5 + XAUC_MARGIN:
        reason = (f"no better than the train median: MAE {mae:.4g} vs the median's "
                  f"{median_mae:.4g} and tie-aware XAUC {xauc:.4f} (rule: beat the median's "
                  f"MAE or rank above {0.5 + XAUC_MARGIN:.2f})")
    return CollapseVerdict(bool(reason), reason, pred_std, label_std, mae, median_mae, xauc)

"""What every model in the zoo provides, so one trainer, one evaluator and one server fit all.

A model is an ``nn.Module`` plus *label state*: whatever it derives from the training labels
before training (GR's vocabulary, CREAD's thresholds, TPM's leaves, D2Q's quantile tables).
The label state is plain JSON, saved in the checkpoint next to the weights, so a model is
rebuilt from its record without unpickling anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from grmodel.config import RunConfig
from grmodel.features import FeatureSchema

_LOG2_E = 1.4426950408889634  # exp(x) = 2 ** (x * log2(e))


def reproducible_exp(x: torch.Tensor) -> torch.Tensor:
    """exp(x) through torch's own exp2. torch's exp goes through MKL's vector math, which in
    some processes computed a worker thread's share to a relative 1.5e-4 instead of 6e-8 (after
    an MKL matmul on that thread), so results differed from run to run (README, reproducible)."""
    return (x * _LOG2_E).exp2_()

Batch = dict[str, torch.Tensor]


class LabelState:
    """What every model of the zoo has, torch module or not: a ``name``, the ``schema``, the
    ``config`` and the JSON label state fitted on the training split before training."""

    name: ClassVar[str]

    def _keep(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]) -> None:
        self.schema = schema
        self.config = config
        self.label_state = label_state

    @classmethod
    def fit_label_state(
        cls,
        train_labels: np.ndarray,
        config: RunConfig,
        train_ids: np.ndarray | None = None,
        schema: FeatureSchema | None = None,
    ) -> dict[str, Any]:
        """Derive the JSON label state from the training split (never valid or test).

        ``train_ids`` [N, F] (in ``schema`` order) serve models whose state also depends on
        features: D2Q's duration-group quantile tables, TPM's per-duration leaves.
        """
        return {}

    @classmethod
    def label_state_fields(cls, config: RunConfig) -> tuple[str, ...]:
        """Feature fields ``fit_label_state`` reads from ``train_ids`` (none by default), so a
        streaming trainer can read just those columns and the labels."""
        return ()


class WatchTimeModel(LabelState, nn.Module):
    """Base class of the torch models: subclasses set ``name`` and implement the methods below."""

    def __init__(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]):
        nn.Module.__init__(self)
        self._keep(schema, config, label_state)

    def targets(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Per-row training targets beyond the raw label (e.g. GR's token sequences)."""
        return {}

    def loss(self, batch: Batch, step: int, total_steps: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on one batch; ``step`` counts optimiser steps over the whole run."""
        raise NotImplementedError

    def predict(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted label, shape [B], in label units (never negative)."""
        raise NotImplementedError

    def embedding_parameters(self) -> list[nn.Parameter]:
        """Parameters that get the embedding weight decay (the paper decays tables only)."""
        return [m.weight for m in self.modules() if isinstance(m, nn.Embedding)]

    def calibrate(self, predict: Callable[[], np.ndarray], valid_label: np.ndarray
                  ) -> dict[str, Any] | None:
        """After training, fit what the model decides from the validation split rather than the
        training one (GR's decode level), with ``predict()`` scoring the validation rows as the
        model stands; record it in ``label_state`` (saved with the checkpoint) and return a
        record of what was chosen, or None when the model has nothing to calibrate."""
        return None


class ArrayModel(LabelState):
    """Base class of the zoo's models that are not torch modules (the GBDT): each fits on whole
    arrays of feature ids in one call and keeps its fitted state as text.

    Like a :class:`WatchTimeModel` it knows nothing of data files: the trainer hands it the
    train and validation arrays (grmodel/training/arrays.py) and the checkpoint writes its
    ``to_text()`` into ``weights_file``, digested like ``model.pt`` (grmodel/checkpoint.py).
    ``label_state`` is plain JSON, as for the torch models.
    """

    weights_file: ClassVar[str]  # the file of the fitted state in a checkpoint directory

    def __init__(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]):
        self._keep(schema, config, label_state)

    def fit(self, train_ids: np.ndarray, train_label: np.ndarray, valid_ids: np.ndarray,
            valid_label: np.ndarray) -> list[float]:
        """Fit on the train arrays, stopping on the validation ones; the validation MAE after
        each step of the fit (a GBDT's boosting rounds), in order."""
        raise NotImplementedError

    def predict_ids(self, ids: np.ndarray, steps: int | None = None) -> np.ndarray:
        """Predicted label (float64, label units, never negative) for ids [N, F] in schema
        order; ``steps`` uses the fit's first ``steps`` steps only (default: the kept ones)."""
        raise NotImplementedError

    def staged_predictions(self, ids: np.ndarray, steps: list[int]) -> list[np.ndarray]:
        """:meth:`predict_ids` after each of ``steps`` (ascending), for the training history."""
        return [self.predict_ids(ids, step) for step in steps]

    def to_text(self) -> str:
        """The fitted state as text (what ``weights_file`` holds)."""
        raise NotImplementedError

    def load_text(self, text: str) -> None:
        """Restore the fitted state from :meth:`to_text`'s text."""
        raise NotImplementedError

    @property
    def kept_steps(self) -> int:
        """Steps of the fit the model keeps (the best validation round of a GBDT)."""
        raise NotImplementedError


ZooModel = WatchTimeModel | ArrayModel

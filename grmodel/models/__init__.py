"""The model zoo: one module per model, registered by name.

``grmodel train --model NAME`` and every experiment look models up here.
"""

from __future__ import annotations

from grmodel.models.base import WatchTimeModel
from grmodel.models.cread import CREADModel
from grmodel.models.d2q import D2QModel
from grmodel.models.gr import GRModel
from grmodel.models.tpm import TPMModel
from grmodel.models.vr import VRModel
from grmodel.models.wlr import WLRModel

MODELS: dict[str, type[WatchTimeModel]] = {
    cls.name: cls for cls in (GRModel, VRModel, WLRModel, D2QModel, TPMModel, CREADModel)
}


def model_class(name: str) -> type[WatchTimeModel]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    return MODELS[name]


__all__ = ["MODELS", "WatchTimeModel", "model_class"]

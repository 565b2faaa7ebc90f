"""The model zoo: one module per model, registered by name.

``grmodel train --model NAME`` and every experiment look models up here. Most are torch
modules (:class:`WatchTimeModel`, the epoch trainer); an :class:`ArrayModel` (the GBDT) fits on
whole arrays in one call.
"""

from __future__ import annotations

from grmodel.models.base import ArrayModel, WatchTimeModel, ZooModel
from grmodel.models.cread import CREADModel
from grmodel.models.d2q import D2QModel
from grmodel.models.gbdt import GBDTModel
from grmodel.models.gr import GRModel
from grmodel.models.tpm import TPMModel
from grmodel.models.vr import VRModel
from grmodel.models.wlr import WLRModel

MODELS: dict[str, type[WatchTimeModel] | type[ArrayModel]] = {
    cls.name: cls for cls in (GRModel, VRModel, WLRModel, D2QModel, TPMModel, CREADModel, GBDTModel)
}


def model_class(name: str) -> type[WatchTimeModel] | type[ArrayModel]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    return MODELS[name]


def is_array_model(name: str) -> bool:
    """Whether ``name`` is a model fitted on whole arrays (grmodel/training/arrays.py), not a
    torch module of the epoch trainer."""
    return issubclass(model_class(name), ArrayModel)


__all__ = ["MODELS", "ArrayModel", "WatchTimeModel", "ZooModel", "is_array_model", "model_class"]

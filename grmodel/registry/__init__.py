"""The MLflow model registry: pyfunc packaging of a trained model (pyfunc.py), versions,
aliases and the promotion gate (promotion.py) and the champion's drift reference
(reference.py). This package is their public face.

``_load_pyfunc`` is MLflow's entry point: every logged model names ``grmodel.registry`` as its
loader module (:data:`LOADER_MODULE`), so models logged before this package was split still load.
"""

from grmodel.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    DECIDED_AT_TAG,
    DECISION_TAG,
    LINEAGE_TAGS,
    SOURCE_RUN_TAG,
    VERDICT_TAG,
    Decision,
    PromotionPolicy,
    alias_version,
    decide,
    evaluate_registered,
    format_history,
    gate,
    history,
    model_uri,
    register_model,
)
from grmodel.registry.pyfunc import (
    DEFAULT_BATCH_SIZE,
    LOADER_MODULE,
    WatchTimePyfunc,
    _load_pyfunc,
    log_model,
    pip_requirements,
    resolve_model_uri,
)
from grmodel.registry.reference import ChampionReference, champion_reference

__all__ = [
    "CHALLENGER", "CHAMPION", "DECIDED_AT_TAG", "DECISION_TAG", "DEFAULT_BATCH_SIZE", "LINEAGE_TAGS",
    "LOADER_MODULE", "SOURCE_RUN_TAG", "VERDICT_TAG", "ChampionReference", "Decision",
    "PromotionPolicy", "WatchTimePyfunc", "_load_pyfunc", "alias_version", "champion_reference",
    "decide", "evaluate_registered", "format_history", "gate", "history", "log_model", "model_uri",
    "pip_requirements", "register_model", "resolve_model_uri",
]

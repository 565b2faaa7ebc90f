"""The MLflow model registry: pyfunc packaging of a trained model (pyfunc.py), versions,
aliases and the promotion gate (promotion.py) and the champion's drift reference
(reference.py). This package is their public face.

``_load_pyfunc`` is MLflow's entry point: every logged model names ``grmodel.registry`` as its
loader module (:data:`LOADER_MODULE`), so models logged before this package was split still load.
"""

from grmodel.registry.promotion import (
    ALIAS_MOVE_PREFIX,
    ARTIFACT_TAG,
    CHALLENGER,
    CHAMPION,
    DECIDED_AT_TAG,
    DECISION_TAG,
    DECISIONS_TAG,
    LINEAGE_TAGS,
    PROMOTED,
    REJECTED,
    SOURCE_RUN_TAG,
    UNJUDGED,
    VERDICT_TAG,
    AliasMove,
    Decision,
    PromotionPolicy,
    alias_moves,
    alias_version,
    check_metrics,
    decay_line,
    decide,
    evaluate_registered,
    format_alias_moves,
    format_history,
    gate,
    history,
    model_uri,
    register_model,
    rollback,
    unjudged_versions,
    version_decisions,
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
    "ALIAS_MOVE_PREFIX", "ARTIFACT_TAG", "CHALLENGER", "CHAMPION", "DECIDED_AT_TAG",
    "DECISIONS_TAG", "DECISION_TAG", "DEFAULT_BATCH_SIZE", "LINEAGE_TAGS", "LOADER_MODULE",
    "PROMOTED", "REJECTED", "SOURCE_RUN_TAG", "UNJUDGED", "VERDICT_TAG", "alias_moves",
    "alias_version", "AliasMove", "ChampionReference", "champion_reference", "check_metrics",
    "decay_line", "decide", "Decision", "evaluate_registered", "format_alias_moves",
    "format_history", "gate", "history", "_load_pyfunc", "log_model", "model_uri",
    "pip_requirements", "PromotionPolicy", "register_model", "resolve_model_uri", "rollback",
    "unjudged_versions", "version_decisions", "WatchTimePyfunc",
]

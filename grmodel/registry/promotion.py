"""The MLflow model registry: versions, aliases and the promotion gate.

:func:`register_model` makes a run's model a new version with the
alias ``challenger`` (once per run: registering the same run again returns the same version).
:func:`gate` evaluates the challenger and the current ``champion`` on the same test split and
moves ``champion`` only when the challenger passes every check of a :class:`PromotionPolicy`.
MLflow keeps no history of alias moves, so each decision is written to its challenger version's
tags (and, inside a run, as that run's promotion log artifact); :func:`history` reads them back.
Concurrent gates on one registered model are not serialised: run one gate at a time per name.
"""


from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grmodel.checkpoint import META_FILE
from grmodel.config import EvalConfig
from grmodel.evaluate import evaluate_models
from grmodel.registry.pyfunc import resolve_model_uri
from grmodel.tracking import DATA_VERSION, LINEAGE_TAGS, connect, sql_string

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION = "champion"
CHALLENGER = "challenger"
# Model version tags.
SOURCE_RUN_TAG = "source_run_id"
VERDICT_TAG = "gate.verdict"
DECIDED_AT_TAG = "gate.decided_at"
DECISION_TAG = "gate.decision"
PROMOTED, REJECTED = "promoted", "rejected"


# --- registration -----------------------------------------------------------------------------


def register_model(
    name: str, run_id: str, artifact: str = "gr", tracking_uri: str | None = None
) -> ModelVersion:
    """Make run ``run_id``'s logged model ``artifact`` a version of ``name``, alias ``challenger``.

    Idempotent per run: when ``name`` already has a version from this run, that version is
    returned (and, if no gate has judged it yet, given the ``challenger`` alias again).
    """
    # lazy: mlflow (seconds to import) only where the registry is read or written; grmodel.registry
    # is also loaded by `grmodel predict` on a model folder, which never needs it
    from mlflow.exceptions import MlflowException

    client = connect(tracking_uri)
    existing = client.search_model_versions(f"name = {sql_string(name)} and run_id = {sql_string(run_id)}")
    if existing:
        version = min(existing, key=lambda v: int(v.version))
    else:
        run = client.get_run(run_id)
        logged = client.search_logged_models(
            [run.info.experiment_id],
            f"source_run_id = {sql_string(run_id)} AND name = {sql_string(artifact)}",
        )
        if not logged:
            raise ValueError(f"run {run_id}: no logged model named {artifact!r}"
                             " (rule: log it with registry.log_model inside that run)")
        model = max(logged, key=lambda m: m.creation_timestamp)
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {k: run.data.tags[k] for k in LINEAGE_TAGS if k in run.data.tags} | {SOURCE_RUN_TAG: run_id}
        version = client.create_model_version(name, f"models:/{model.model_id}", run_id=run_id,
                                              tags=tags, model_id=model.model_id)
    if VERDICT_TAG not in (version.tags or {}):
        client.set_registered_model_alias(name, CHALLENGER, version.version)
    return version


def alias_version(name: str, alias: str, tracking_uri: str | None = None) -> str | None:
    """The version an alias points to, or None when ``name`` has no such alias."""
    return _alias_version(connect(tracking_uri), name, alias)


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    with _not_found_is_value_error(client):
        version = client.get_registered_model(name).aliases.get(alias)
    return None if version is None else str(version)  # REST gives str, sqlite int


@contextmanager
def _not_found_is_value_error(client: MlflowClient) -> Iterator[None]:
    """A missing model or version is a user error: one line naming it, no MLflow traceback."""
    # lazy: mlflow, see register_model
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ValueError(f"{client.tracking_uri}: {exc.message}") from None
        raise


def model_uri(name: str, alias_or_version: str | int) -> str:
    ref = str(alias_or_version)
    return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


def evaluate_registered(
    name: str,
    alias_or_version: str | int,
    processed_dir: str | Path,
    tracking_uri: str | None = None,
    config: EvalConfig | None = None,
) -> dict[str, Any]:
    """Metrics of a registered version (by alias or number) on ``processed_dir``'s test split."""
    label = str(alias_or_version)
    model_dir = resolve_model_uri(model_uri(name, alias_or_version), tracking_uri)
    return evaluate_models(processed_dir, {label: model_dir}, config)[label]


# --- the promotion gate -----------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionPolicy:
    """When a challenger may replace the champion (thresholds are recorded with each decision).

    Against the champion: MAE lower by at least ``min_mae_rel_improvement`` (relative) and XAUC
    not lower by more than ``max_xauc_drop``. Against each baseline of this run named in
    ``require_beats_baselines``: MAE lower, and XAUC within the same tolerance. With no
    champion yet only the baseline checks apply.
    """

    min_mae_rel_improvement: float = 0.01
    max_xauc_drop: float = 0.005
    require_beats_baselines: tuple[str, ...] = ("cread", "tpm")

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_mae_rel_improvement < 1.0:
            raise ValueError(f"min_mae_rel_improvement={self.min_mae_rel_improvement}: must be in [0, 1)")
        if self.max_xauc_drop < 0.0:
            raise ValueError(f"max_xauc_drop={self.max_xauc_drop}: must be >= 0")
        object.__setattr__(self, "require_beats_baselines", tuple(self.require_beats_baselines))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "require_beats_baselines": list(self.require_beats_baselines)}


def decide(
    policy: PromotionPolicy,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    baselines: dict[str, dict[str, float]],
) -> list[dict[str, Any]]:
    """The checks of ``policy`` (each ``{"check", "passed", "detail"}``); promote iff all pass.

    Metrics are dicts with ``mae`` and ``xauc`` measured on the same test data.
    """
    checks = []
    if champion is not None:
        checks += _compare(challenger, champion, "champion", policy.min_mae_rel_improvement,
                           policy.max_xauc_drop)
    for name in policy.require_beats_baselines:
        if name in baselines:
            checks += _compare(challenger, baselines[name], name, 0.0, policy.max_xauc_drop)
        else:
            checks.append({"check": f"mae < {name}", "passed": False,
                           "detail": f"baseline {name!r} was not evaluated in this run"})
    return checks


def _compare(new: dict[str, float], ref: dict[str, float], ref_name: str, min_rel: float,
             max_drop: float) -> list[dict[str, Any]]:
    gain = (ref["mae"] - new["mae"]) / ref["mae"] if ref["mae"] > 0 else 0.0
    drop = ref["xauc"] - new["xauc"]
    return [
        {"check": f"mae < {ref_name}", "passed": bool(new["mae"] < ref["mae"] and gain >= min_rel),
         "detail": f"MAE {new['mae']:.4f} vs {ref['mae']:.4f}: {gain:+.2%} (needs >= {min_rel:.2%})"},
        {"check": f"xauc ~ {ref_name}", "passed": bool(drop <= max_drop),
         "detail": f"XAUC {new['xauc']:.4f} vs {ref['xauc']:.4f}: drop {drop:+.4f} (max {max_drop:.4f})"},
    ]


@dataclass
class Decision:
    """One gate decision: what was compared, on which data, under which policy, and why."""

    model: str
    challenger_version: str
    champion_version: str | None  # the champion when the gate ran (None: there was none)
    verdict: str  # PROMOTED or REJECTED
    checks: list[dict[str, Any]]
    metrics: dict[str, dict[str, float]]  # "challenger", "champion" and baselines: mae, xauc, n
    policy: dict[str, Any]
    data_version: str
    decided_at: str  # ISO 8601, UTC
    run_id: str | None = None  # the MLflow run that ran the gate, if any

    @property
    def promoted(self) -> bool:
        return self.verdict == PROMOTED

    @property
    def champion_after(self) -> str | None:
        return self.challenger_version if self.promoted else self.champion_version

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        return cls(**json.loads(text))


def gate(
    name: str,
    version: str | int,
    processed_dir: str | Path,
    *,
    baselines: dict[str, dict[str, Any]] | None = None,
    policy: PromotionPolicy | None = None,
    tracking_uri: str | None = None,
    eval_config: EvalConfig | None = None,
) -> Decision:
    """Judge version ``version`` of ``name`` and move ``champion`` to it if it passes.

    The challenger and the current champion are both evaluated here on ``processed_dir``'s test
    split (the new run's data); ``baselines`` are this run's baseline metrics on that split
    (e.g. ``evaluate_models`` rows for ``cread`` and ``tpm``). The decision is recorded on the
    version's tags before the alias moves; judging a version again returns its recorded
    decision (and completes a promotion that was interrupted before the alias moved).
    """
    # lazy: mlflow, see register_model
    import mlflow

    client = connect(tracking_uri)
    version = str(version)
    with _not_found_is_value_error(client):
        model_version = client.get_model_version(name, version)
    if model_version.tags.get(VERDICT_TAG) in (PROMOTED, REJECTED):
        decision = Decision.from_json(model_version.tags[DECISION_TAG])
        if decision.promoted and _alias_version(client, name, CHAMPION) == decision.champion_version:
            client.set_registered_model_alias(name, CHAMPION, version)
        return decision

    policy = policy or PromotionPolicy()
    champion = _alias_version(client, name, CHAMPION)
    model_dirs = {"challenger": resolve_model_uri(model_uri(name, version))}
    if champion is not None:
        model_dirs["champion"] = resolve_model_uri(model_uri(name, champion))
    results = evaluate_models(processed_dir, model_dirs, eval_config)
    required = {b: _headline(baselines[b]) for b in policy.require_beats_baselines if b in (baselines or {})}
    metrics = {k: _headline(results[k]) for k in model_dirs} | required
    checks = [_informative_check(model_dirs["challenger"])]
    checks += decide(policy, metrics["challenger"], metrics.get("champion"), required)
    active = mlflow.active_run()
    decision = Decision(
        model=name,
        challenger_version=version,
        champion_version=champion,
        verdict=PROMOTED if all(c["passed"] for c in checks) else REJECTED,
        checks=checks,
        metrics=metrics,
        policy=policy.to_dict(),
        data_version=model_version.tags.get(DATA_VERSION, "unknown"),
        decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=active.info.run_id if active else None,
    )
    # Record first, then move the alias: an interruption leaves a record, never a silent move.
    client.set_model_version_tag(name, version, DECISION_TAG, decision.to_json())
    client.set_model_version_tag(name, version, DECIDED_AT_TAG, decision.decided_at)
    client.set_model_version_tag(name, version, VERDICT_TAG, decision.verdict)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    if active is not None:  # this run's promotion log: the decision and the history so far
        mlflow.log_dict(json.loads(decision.to_json()), "promotion/decision.json")
        log = [json.loads(d.to_json()) for d in history(name)]
        mlflow.log_dict({"model": name, "decisions": log}, "promotion/promotion_log.json")
    return decision


def _informative_check(model_dir: Path) -> dict[str, Any]:
    """The trainer's collapse verdict (grmodel/collapse.py): a collapsed model never passes."""
    verdict = json.loads((Path(model_dir) / META_FILE).read_text()).get("collapse")
    if verdict is None:
        return {"check": "not collapsed", "passed": True,
                "detail": "no collapse verdict recorded (a checkpoint from before the check)"}
    return {"check": "not collapsed", "passed": not verdict["collapsed"],
            "detail": verdict["reason"] or (f"validation prediction std {verdict['pred_std']:.4g}"
                                            f" (labels {verdict['label_std']:.4g})")}


def _headline(row: dict[str, Any]) -> dict[str, float]:
    return {"mae": float(row["mae"]), "xauc": float(row["xauc"]), "n": int(row.get("n", 0))}


def history(name: str, tracking_uri: str | None = None) -> list[Decision]:
    """Every gate decision on ``name``, oldest first."""
    client = connect(tracking_uri)
    versions = client.search_model_versions(f"name = {sql_string(name)}")
    decisions = [Decision.from_json(v.tags[DECISION_TAG]) for v in versions if DECISION_TAG in v.tags]
    return sorted(decisions, key=lambda d: (d.decided_at, int(d.challenger_version)))


def format_history(decisions: list[Decision]) -> str:
    """A Markdown table: when, which version, the verdict, the champion before and after, why."""
    lines = [
        "| decided (UTC) | version | verdict | champion before → after | challenger MAE / XAUC"
        " | champion MAE / XAUC | data | failed checks |",
        "|---|---:|---|---|---|---|---|---|",
    ]
    for d in decisions:
        failed = "; ".join(f"{c['check']}: {c['detail']}" for c in d.checks if not c["passed"])
        champ = d.metrics.get("champion")
        lines.append(
            f"| {d.decided_at} | {d.challenger_version} | {d.verdict} | "
            f"{_v(d.champion_version)} → {_v(d.champion_after)} | {_mx(d.metrics['challenger'])} | "
            f"{_mx(champ) if champ else '-'} | {d.data_version} | {failed or '-'} |"
        )
    return "\n".join(lines)


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _mx(metrics: dict[str, float]) -> str:
    return f"{metrics['mae']:.4f} / {metrics['xauc']:.4f}"

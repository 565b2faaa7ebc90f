"""The MLflow model registry: versions, aliases, the promotion gate, rollback and history.

:func:`register_model` makes a run's logged model a new version with the alias ``challenger``
(once per (name, run, logged model): registering the same one again returns the same version).
:func:`gate` scores the challenger and the current ``champion`` on the same test rows, each
through its own encoders, and moves ``champion`` only when the challenger passes every check of
a :class:`PromotionPolicy`; it also measures how far the champion's MAE has moved since it was
promoted (its decay). :func:`rollback` moves ``champion`` back to a former champion by hand.

MLflow keeps no history of alias moves or decisions, so grmodel writes them itself: each
decision on its challenger version's tags (``gate.decision.<n>``, the latest also as
``gate.decision``; a re-decision with new inputs is decision n+1, the same inputs give back the
recorded one), and each alias move grmodel makes (gate, rollback, registration) as a
registered-model tag ``alias_move.<UTC time>`` (when, who, why, from, to), recorded before the
alias moves. :func:`history`, :func:`alias_moves` and :func:`unjudged_versions` read them back.
Concurrent gates on one registered model are not serialised: run one gate at a time per name.
"""


from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import logging
import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grmodel import metrics as metric_functions
from grmodel.checkpoint import META_FILE
from grmodel.config import EvalConfig
from grmodel.data.io import sha256_file
from grmodel.evaluate import evaluate_models, score_test
from grmodel.registry.pyfunc import resolve_model_uri
from grmodel.tracking import DATA_VERSION, LINEAGE_TAGS, connect, sql_string

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
# Model version tags.
SOURCE_RUN_TAG = "source_run_id"
ARTIFACT_TAG = "artifact"  # the logged model's name in its run (gr, cread, ...)
VERDICT_TAG = "gate.verdict"
DECIDED_AT_TAG = "gate.decided_at"
DECISION_TAG = "gate.decision"  # the latest decision; gate.decision.<n> is the n-th
DECISIONS_TAG = "gate.decisions"  # how many decisions the version has had
PROMOTED, REJECTED, UNJUDGED = "promoted", "rejected", "unjudged"
# Registered-model tags: one per alias move, keyed by UTC time (sorting them is their order).
ALIAS_MOVE_PREFIX = "alias_move."


def actor() -> str:
    """Who acts, for the records: the operating-system user (``unknown`` when there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers), no USER variable
        return "unknown"


# --- alias moves ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias made through grmodel: when, who, why, from which version to which."""

    alias: str
    from_version: str | None  # None: the alias was not set
    to_version: str
    at: str  # ISO 8601, UTC
    by: str
    reason: str
    how: str  # gate | rollback | register

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AliasMove:
        raw = json.loads(text)
        return cls(**{f.name: raw.get(f.name) for f in dataclasses.fields(cls)})


def move_alias(client: MlflowClient, name: str, alias: str, version: str, *, how: str,
               reason: str, by: str | None = None) -> AliasMove | None:
    """Point ``alias`` at ``version``, the move recorded first (an interruption leaves a record,
    never a silent move); None when the alias is there already."""
    before = _alias_version(client, name, alias)
    if before == str(version):
        return None
    now = datetime.now(UTC)
    move = AliasMove(alias, before, str(version), now.isoformat(timespec="seconds"),
                     by or actor(), reason, how)
    key = f"{ALIAS_MOVE_PREFIX}{now.strftime('%Y%m%dT%H%M%S.%fZ')}.{secrets.token_hex(2)}"
    client.set_registered_model_tag(name, key, move.to_json())
    client.set_registered_model_alias(name, alias, str(version))
    return move


def alias_moves(name: str, tracking_uri: str | None = None) -> list[AliasMove]:
    """Every alias move grmodel recorded on ``name``, oldest first."""
    client = connect(tracking_uri)
    with _not_found_is_value_error(client):
        tags = client.get_registered_model(name).tags or {}
    return [AliasMove.from_json(tags[k]) for k in sorted(tags) if k.startswith(ALIAS_MOVE_PREFIX)]


# --- registration -----------------------------------------------------------------------------


def register_model(
    name: str, run_id: str, artifact: str = "gr", tracking_uri: str | None = None,
    by: str | None = None,
) -> ModelVersion:
    """Make run ``run_id``'s logged model ``artifact`` a version of ``name``, alias ``challenger``.

    Idempotent per (name, run, logged model): when ``name`` already has a version of this very
    model, that version is returned (and, if no gate has judged it yet, given the
    ``challenger`` alias again). A run without a logged model of that name is refused, even
    when another of its models is registered.
    """
    # lazy: mlflow (seconds to import) only where the registry is read or written; grmodel.registry
    # is also loaded by `grmodel predict` on a model folder, which never needs it
    from mlflow.exceptions import MlflowException

    client = connect(tracking_uri)
    with _not_found_is_value_error(client):
        run = client.get_run(run_id)
    logged = client.search_logged_models(
        [run.info.experiment_id],
        f"source_run_id = {sql_string(run_id)} AND name = {sql_string(artifact)}",
    )
    if not logged:
        raise ValueError(f"run {run_id}: no logged model named {artifact!r}"
                         " (rule: log it with registry.log_model inside that run)")
    # A version names its logged model by id (REST) or only by its source URI (sqlite stores).
    sources = {m.model_id for m in logged} | {f"models:/{m.model_id}" for m in logged}
    existing = [v for v in client.search_model_versions(
        f"name = {sql_string(name)} and run_id = {sql_string(run_id)}")
        if v.model_id in sources or v.source in sources]
    if existing:
        version = min(existing, key=lambda v: int(v.version))
    else:
        model = max(logged, key=lambda m: m.creation_timestamp)
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {k: run.data.tags[k] for k in LINEAGE_TAGS if k in run.data.tags} | {
            SOURCE_RUN_TAG: run_id, ARTIFACT_TAG: artifact}
        version = client.create_model_version(name, f"models:/{model.model_id}", run_id=run_id,
                                              tags=tags, model_id=model.model_id)
    if VERDICT_TAG not in (version.tags or {}):
        move_alias(client, name, CHALLENGER, str(version.version), how="register",
                   reason=f"registered from run {run_id} (logged model {artifact!r})", by=by)
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
    """A missing model, version or run is a user error: one line naming it, no MLflow
    traceback."""
    # lazy: mlflow, see register_model
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
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
    ``require_beats_baselines``: MAE lower, and XAUC within the same tolerance; a baseline that
    collapsed to a constant is no bar and is left out, with the reason shown. With no champion
    yet only the baseline checks apply. ``max_champion_decay`` never decides: a champion whose
    MAE on today's test rows exceeds its MAE when it was promoted by more than this (relative)
    is flagged.
    """

    min_mae_rel_improvement: float = 0.01
    max_xauc_drop: float = 0.005
    require_beats_baselines: tuple[str, ...] = ("cread", "tpm")
    max_champion_decay: float = 0.2

    def __post_init__(self) -> None:
        for name, low, high in (("min_mae_rel_improvement", 0.0, 1.0), ("max_xauc_drop", 0.0, 1.0),
                                ("max_champion_decay", 0.0, math.inf)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and low <= value and (value < high)):
                upper = "" if high == math.inf else f" and < {high:g}"
                raise ValueError(f"{name}={value!r}: must be a finite number >= {low:g}{upper}"
                                 " (rule: promotion thresholds are finite numbers in range)")
        names = self.require_beats_baselines
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"require_beats_baselines={names!r}: must be a list of baseline"
                             " names (rule: names of this run's baselines)")
        object.__setattr__(self, "require_beats_baselines", tuple(names))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "require_beats_baselines": list(self.require_beats_baselines)}


def check_metrics(rows: Any, source: str = "baselines") -> dict[str, dict[str, Any]]:
    """``rows`` as a baselines mapping ``{name: {"mae": number, "xauc": number, ...}}`` (what
    ``grmodel evaluate --out`` and the evaluate stage write), or a ValueError naming the rule."""
    rule = ("(rule: a JSON object of {model: {\"mae\": number, \"xauc\": number}}, as `grmodel"
            " evaluate --out` writes)")
    if not isinstance(rows, dict):
        raise ValueError(f"{source}: a JSON {type(rows).__name__}, not an object {rule}")
    for name, row in rows.items():
        if not isinstance(row, dict):
            raise ValueError(f"{source}: {name!r} is a {type(row).__name__}, not an object {rule}")
        for key in ("mae", "xauc"):
            value = row.get(key)
            if key in row and (isinstance(value, bool) or not isinstance(value, int | float)
                               or not math.isfinite(value)):
                raise ValueError(f"{source}: {name}.{key} is {value!r}, not a finite number {rule}")
    return rows


def decide(
    policy: PromotionPolicy,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    baselines: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """The checks of ``policy`` (each ``{"check", "passed", "detail"}``, ``"skipped": True`` for
    a baseline left out); promote iff all pass.

    Metrics are dicts with ``mae`` and ``xauc`` measured on the same test data. A baseline
    whose metrics say it collapsed (``collapsed`` true: the trainer's verdict on every seed,
    grmodel/collapse.py; ``collapsed_because``: the reasons) is no bar: its check passes,
    marked skipped, and says why it was left out.
    """
    checks = []
    if champion is not None:
        checks += _compare(challenger, champion, "champion", policy.min_mae_rel_improvement,
                           policy.max_xauc_drop)
    for name in policy.require_beats_baselines:
        row = baselines.get(name)
        if row is None:
            checks.append({"check": f"mae < {name}", "passed": False,
                           "detail": f"baseline {name!r} was not evaluated in this run"})
        elif row.get("collapsed"):
            reason = row.get("collapsed_because") or ("the trainer's verdict on the validation"
                                                       " split; the evaluation report names the rule")
            checks.append({"check": f"mae < {name}", "passed": True, "skipped": True,
                           "baseline": name,
                           "detail": f"left out: baseline {name!r} collapsed ({reason}), so it is"
                                     f" no bar to beat (its MAE {row['mae']:.4f}, XAUC"
                                     f" {row['xauc']:.4f})"})
        elif "mae" not in row or "xauc" not in row:
            checks.append({"check": f"mae < {name}", "passed": False,
                           "detail": f"baseline {name!r} has no MAE and XAUC in this run"})
        else:
            checks += _compare(challenger, row, name, 0.0, policy.max_xauc_drop)
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
    metrics: dict[str, dict[str, Any]]  # "challenger", "champion" and baselines: mae, xauc, n
    policy: dict[str, Any]
    data_version: str
    decided_at: str  # ISO 8601, UTC
    run_id: str | None = None  # the MLflow run that ran the gate, if any
    number: int = 1  # the n-th decision on this version (n > 1: re-decided on new inputs)
    inputs: str = ""  # digest of what was judged: test rows, policy, baselines, champion
    scored_on: dict[str, str] = field(default_factory=dict)  # how each model read the rows
    champion_decay: dict[str, Any] | None = None  # the champion's MAE now vs when promoted
    by: str = ""  # who ran the gate

    @property
    def promoted(self) -> bool:
        return self.verdict == PROMOTED

    @property
    def champion_after(self) -> str | None:
        return self.challenger_version if self.promoted else self.champion_version

    @property
    def decay_flagged(self) -> bool:
        return bool(self.champion_decay and self.champion_decay.get("flagged"))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        raw = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def gate(
    name: str,
    version: str | int,
    processed_dir: str | Path,
    *,
    baselines: dict[str, dict[str, Any]] | None = None,
    policy: PromotionPolicy | None = None,
    tracking_uri: str | None = None,
    eval_config: EvalConfig | None = None,
    by: str | None = None,
) -> Decision:
    """Judge version ``version`` of ``name`` and move ``champion`` to it if it passes.

    The challenger and the current champion are both scored here on ``processed_dir``'s test
    rows (the new run's data), each through its own encoders (grmodel.evaluate.score_test);
    ``baselines`` are this run's baseline metrics on those rows (e.g. ``evaluate_models`` rows
    for ``cread`` and ``tpm``, with their collapse verdicts). The decision is recorded on the
    version's tags before the alias moves. Judging a version again on the same inputs (test
    rows, policy, baselines, champion) returns its recorded decision (and completes a promotion
    interrupted before the alias moved); on new inputs it is a new decision, numbered.
    """
    # lazy: mlflow, see register_model
    import mlflow

    client = connect(tracking_uri)
    version = str(version)
    policy = policy or PromotionPolicy()
    baselines = check_metrics(baselines or {})
    eval_config = eval_config or EvalConfig()
    with _not_found_is_value_error(client):
        model_version = client.get_model_version(name, version)
    earlier = version_decisions(model_version.tags or {})
    last = earlier[-1] if earlier else None
    champion = _alias_version(client, name, CHAMPION)
    # Retried after its promotion moved the alias: judged against the champion it replaced.
    compared = last.champion_version if (last and last.promoted and champion == version) else champion
    required = {b: baselines[b] for b in policy.require_beats_baselines if b in baselines}
    inputs = _inputs_digest(processed_dir, policy, required, compared, eval_config)
    if last is not None and last.inputs == inputs:
        if last.promoted and champion == last.champion_version:
            move_alias(client, name, CHAMPION, version, how="gate", by=last.by or by,
                       reason=_move_reason(last))
        return last
    if champion == version:
        raise ValueError(f"{name} v{version} is the champion: nothing to judge it against (rule:"
                         " the gate judges a challenger against the champion; `grmodel registry"
                         " rollback` moves the champion by hand)")

    model_dirs = {"challenger": resolve_model_uri(model_uri(name, version))}
    if compared is not None:
        model_dirs["champion"] = resolve_model_uri(model_uri(name, compared))
    scores = score_test(processed_dir, model_dirs, eval_config.batch_size)
    measured = {k: _headline(metric_functions.evaluate_predictions(scores.labels, pred, eval_config))
                for k, pred in scores.predictions.items()}
    metrics = measured | {b: _headline(row) for b, row in required.items()}
    checks = [_informative_check(model_dirs["challenger"])]
    checks += decide(policy, measured["challenger"], measured.get("champion"), required)
    decay = (champion_decay(client, name, compared, measured["champion"]["mae"],
                            policy.max_champion_decay) if compared is not None else None)
    active = mlflow.active_run()
    decision = Decision(
        model=name,
        challenger_version=version,
        champion_version=compared,
        verdict=PROMOTED if all(c["passed"] for c in checks) else REJECTED,
        checks=checks,
        metrics=metrics,
        policy=policy.to_dict(),
        data_version=model_version.tags.get(DATA_VERSION, "unknown"),
        decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=active.info.run_id if active else None,
        number=len(earlier) + 1,
        inputs=inputs,
        scored_on=scores.scored_on,
        champion_decay=decay,
        by=by or actor(),
    )
    if decision.decay_flagged:
        log.warning("%s", decay_line(decision))
    # Record first, then move the alias: an interruption leaves a record, never a silent move.
    record = decision.to_json()
    client.set_model_version_tag(name, version, f"{DECISION_TAG}.{decision.number}", record)
    client.set_model_version_tag(name, version, DECISIONS_TAG, str(decision.number))
    client.set_model_version_tag(name, version, DECISION_TAG, record)
    client.set_model_version_tag(name, version, DECIDED_AT_TAG, decision.decided_at)
    client.set_model_version_tag(name, version, VERDICT_TAG, decision.verdict)
    if decision.promoted:
        move_alias(client, name, CHAMPION, version, how="gate", reason=_move_reason(decision),
                   by=decision.by)
    if active is not None:  # this run's promotion log: the decision and the history so far
        mlflow.log_dict(json.loads(record), "promotion/decision.json")
        log_ = [json.loads(d.to_json()) for d in history(name)]
        mlflow.log_dict({"model": name, "decisions": log_}, "promotion/promotion_log.json")
    return decision


def _move_reason(decision: Decision) -> str:
    passed = [c["check"] for c in decision.checks if c["passed"] and not c.get("skipped")]
    return (f"gate decision {decision.number} on v{decision.challenger_version}: passed"
            f" {', '.join(passed)}")


def _inputs_digest(processed_dir: str | Path, policy: PromotionPolicy,
                   baselines: dict[str, dict[str, Any]], champion: str | None,
                   eval_config: EvalConfig) -> str:
    """What a decision depends on besides the challenger: the test rows, the policy, the
    required baselines' rows, the champion compared with and the evaluation settings."""
    test = Path(processed_dir) / "test.parquet"
    files = sorted(p for p in test.rglob("*") if p.is_file()) if test.is_dir() else [test]
    rows = [f"{p.name}:{sha256_file(p)}" for p in files if p.is_file()]
    payload = {"test": rows, "policy": policy.to_dict(), "baselines": baselines,
               "champion": champion, "eval": dataclasses.asdict(eval_config)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def champion_decay(client: MlflowClient, name: str, champion: str, mae_now: float,
                   max_decay: float) -> dict[str, Any]:
    """The champion's MAE on today's test rows against its MAE when it was promoted (its
    promoting decision's, on that day's rows): ``decay`` = now / then - 1, flagged above
    ``max_decay``. Without a promoting decision (set outside the gate) the decay is unknown."""
    with _not_found_is_value_error(client):
        tags = client.get_model_version(name, champion).tags or {}
    promoted = [d for d in version_decisions(tags) if d.promoted]
    entry: dict[str, Any] = {"version": champion, "mae": mae_now, "max_decay": max_decay,
                             "mae_at_promotion": None, "promoted_at": None, "decay": None,
                             "flagged": False}
    if promoted:
        then = float(promoted[-1].metrics["challenger"]["mae"])
        decay = mae_now / then - 1.0 if then > 0 else None
        entry.update(mae_at_promotion=then, promoted_at=promoted[-1].decided_at, decay=decay,
                     flagged=bool(decay is not None and decay > max_decay))
    return entry


def decay_line(decision: Decision) -> str:
    """One line on the champion's decay (empty without a champion)."""
    d = decision.champion_decay
    if not d:
        return ""
    if d.get("decay") is None:
        return (f"champion v{d['version']}: MAE {d['mae']:.4f} on this test day; its MAE when"
                " promoted is not recorded (decay unknown)")
    flag = (f"DECAYED beyond {d['max_decay']:.0%}" if d["flagged"]
            else f"within {d['max_decay']:.0%}")
    return (f"champion v{d['version']}: MAE {d['mae']:.4f} on this test day vs"
            f" {d['mae_at_promotion']:.4f} when promoted ({d['promoted_at']}): decay"
            f" {d['decay']:+.1%}, {flag}")


def _informative_check(model_dir: Path) -> dict[str, Any]:
    """The trainer's collapse verdict (grmodel/collapse.py): a collapsed model never passes."""
    verdict = json.loads((Path(model_dir) / META_FILE).read_text()).get("collapse")
    if verdict is None:
        return {"check": "not collapsed", "passed": True,
                "detail": "no collapse verdict recorded (a checkpoint from before the check)"}
    return {"check": "not collapsed", "passed": not verdict["collapsed"],
            "detail": verdict["reason"] or (f"validation prediction std {verdict['pred_std']:.4g}"
                                            f" (labels {verdict['label_std']:.4g})")}


def _headline(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"mae": float(row["mae"]), "xauc": float(row["xauc"]),
                           "n": int(row.get("n", 0))}
    if row.get("collapsed"):
        out["collapsed"] = 1.0
    return out


# --- rollback ---------------------------------------------------------------------------------


def rollback(name: str, to_version: str | int, reason: str, tracking_uri: str | None = None,
             by: str | None = None) -> AliasMove:
    """Move ``champion`` back to ``to_version``, a former champion, by hand; recorded with who
    and why (``reason``, required)."""
    to_version = str(to_version)
    if not reason or not reason.strip():  # before any connection: nothing to reach to refuse it
        raise ValueError("--reason is empty (rule: a rollback says why)")
    client = connect(tracking_uri)
    with _not_found_is_value_error(client):
        target = client.get_model_version(name, to_version)
    current = _alias_version(client, name, CHAMPION)
    if current == to_version:
        raise ValueError(f"{name} v{to_version} is the champion already (rule: a rollback moves"
                         " the champion to another version)")
    was_champion = any(d.promoted for d in version_decisions(target.tags or {})) or any(
        m.alias == CHAMPION and m.to_version == to_version for m in alias_moves(name, tracking_uri))
    if not was_champion:
        raise ValueError(f"{name} v{to_version} was never the champion (rule: a rollback returns"
                         " to a former champion; `grmodel registry promote` judges a new one)")
    move = move_alias(client, name, CHAMPION, to_version, how="rollback", reason=reason.strip(),
                      by=by)
    assert move is not None  # the champion was another version
    return move


# --- history ----------------------------------------------------------------------------------


def version_decisions(tags: dict[str, str]) -> list[Decision]:
    """A version's decisions, oldest first, from its tags (one, for a version decided before
    decisions were numbered)."""
    count = int(tags.get(DECISIONS_TAG, "0") or 0)
    numbered = [tags[f"{DECISION_TAG}.{n}"] for n in range(1, count + 1)
                if f"{DECISION_TAG}.{n}" in tags]
    if numbered:
        return [Decision.from_json(text) for text in numbered]
    return [Decision.from_json(tags[DECISION_TAG])] if DECISION_TAG in tags else []


def history(name: str, tracking_uri: str | None = None) -> list[Decision]:
    """Every gate decision on ``name`` (re-decisions included), oldest first."""
    client = connect(tracking_uri)
    versions = client.search_model_versions(f"name = {sql_string(name)}")
    decisions = [d for v in versions for d in version_decisions(v.tags or {})]
    return sorted(decisions, key=lambda d: (d.decided_at, int(d.challenger_version), d.number))


def unjudged_versions(name: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Versions no gate has judged: ``{"version", "registered_at", "run_id", "aliases"}``."""
    client = connect(tracking_uri)
    with _not_found_is_value_error(client):
        aliases = client.get_registered_model(name).aliases or {}
    versions = client.search_model_versions(f"name = {sql_string(name)}")
    rows = [{"version": str(v.version),
             "registered_at": datetime.fromtimestamp(v.creation_timestamp / 1000, UTC)
             .isoformat(timespec="seconds"),
             "run_id": v.run_id,
             "aliases": sorted(a for a, at in aliases.items() if str(at) == str(v.version))}
            for v in versions if not version_decisions(v.tags or {})]
    return sorted(rows, key=lambda r: int(r["version"]))


def format_history(decisions: list[Decision], unjudged: list[dict[str, Any]] | None = None) -> str:
    """A Markdown table: when, which version, the verdict, the champion before and after, the
    champion's decay, why; versions never judged as ``unjudged`` rows."""
    lines = [
        "| decided (UTC) | version | verdict | champion before → after | challenger MAE / XAUC"
        " | champion MAE / XAUC | champion decay | data | failed checks; notes |",
        "|---|---:|---|---|---|---|---|---|---|",
    ]
    for d in decisions:
        failed = [f"{c['check']}: {c['detail']}" for c in d.checks if not c["passed"]]
        notes = [c["detail"] for c in d.checks if c.get("skipped")]
        if any(how != "dataset ids" for how in d.scored_on.values()):
            notes.append("scored on: " + ", ".join(f"{k} {v}" for k, v in d.scored_on.items()))
        champ = d.metrics.get("champion")
        verdict = d.verdict if d.number == 1 else f"{d.verdict} (decision {d.number})"
        lines.append(
            f"| {d.decided_at} | {d.challenger_version} | {verdict} | "
            f"{_v(d.champion_version)} → {_v(d.champion_after)} | {_mx(d.metrics['challenger'])} | "
            f"{_mx(champ) if champ else '-'} | {_decay_cell(d)} | {d.data_version} |"
            f" {'; '.join(failed + notes) or '-'} |"
        )
    for row in unjudged or []:
        aliases = f" (alias {', '.join(row['aliases'])})" if row["aliases"] else ""
        lines.append(f"| registered {row['registered_at']} | {row['version']} | {UNJUDGED}"
                     f"{aliases} | - | - | - | - | - | no gate has judged it |")
    return "\n".join(lines)


def format_alias_moves(moves: list[AliasMove]) -> str:
    """A Markdown table of alias moves: when, which alias, from → to, how, by whom, why."""
    lines = ["| moved (UTC) | alias | from → to | how | by | why |", "|---|---|---|---|---|---|"]
    for m in moves:
        lines.append(f"| {m.at} | {m.alias} | {_v(m.from_version)} → {_v(m.to_version)} | {m.how}"
                     f" | {m.by} | {m.reason} |")
    return "\n".join(lines)


def _decay_cell(d: Decision) -> str:
    decay = d.champion_decay
    if not decay:
        return "-"
    if decay.get("decay") is None:
        return "unknown"
    return f"{decay['decay']:+.1%}" + (" FLAGGED" if decay["flagged"] else "")


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _mx(metrics: dict[str, float]) -> str:
    return f"{metrics['mae']:.4f} / {metrics['xauc']:.4f}"

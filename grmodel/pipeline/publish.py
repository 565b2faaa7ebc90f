"""The pipeline's last steps: MLflow tracking from the stage records, registration, the gate.

:func:`track_and_register` opens (or resumes) the parent run of the pipeline run, logs one
nested run per stage from the stage's ``stage.json`` (params, metrics, per-epoch curves,
reports), then, in a nested ``register`` run, logs GR as a pyfunc model, registers it as a new
version with the alias ``challenger`` and runs the promotion gate against the champion and this
run's baselines. Retrying it within one pipeline run neither duplicates stage runs nor creates a
second model version. :func:`close_tracking` (the pipeline's exit handler) marks the parent
run FINISHED or FAILED, also when a stage failed before anything was tracked.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grmodel import registry
from grmodel.atomic import write_json_atomic, write_text_atomic
from grmodel.pipeline.stages import GR, StageError, StageRecord
from grmodel.registry import format_history
from grmodel.reproduce import RunRecord, log_run_record
from grmodel.tracking import (
    PIPELINE_RUN_ID,
    connect,
    finish_run,
    log_artifacts,
    log_history,
    sql_string,
    stage_run,
    start_pipeline_run,
)
from grmodel.training.records import TRAINING_RECORD

log = logging.getLogger(__name__)

REGISTER_STAGE = "register"
PIPELINE_STATUS_TAG = "pipeline_status"


@dataclass(frozen=True)
class TrackingTarget:
    """Where a pipeline run is tracked: the MLflow server or store, experiment and run id."""

    uri: str
    pipeline_run_id: str
    experiment: str = "grmodel"
    artifact_root: str = ""  # required by database URIs (sqlite:///...), optional for servers

    def __post_init__(self) -> None:
        if not self.uri:
            raise StageError("MLflow tracking URI is empty (rule: the pipeline tracks every run;"
                             " set mlflow_tracking_uri)")
        if not self.pipeline_run_id:
            raise StageError("pipeline run id is empty (rule: it keys the MLflow parent run)")

    def parent(self, data_version: str, params: dict[str, Any] | None = None) -> str:
        return start_pipeline_run(
            self.uri, pipeline_run_id=self.pipeline_run_id, data_version=data_version,
            experiment=self.experiment, artifact_root=self.artifact_root or None, configs=params,
        )


def track_and_register(
    target: TrackingTarget,
    *,
    data_version: str,
    stage_dirs: list[str | Path],
    processed: str | Path,
    gr_model_dir: str | Path,
    evaluation_dir: str | Path,
    model_name: str,
    policy: Any,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Track the run's stages, register GR and run the gate; the decision goes to ``out_dir``.

    ``policy`` is a ``grmodel.registry.PromotionPolicy``; the baselines it names are taken
    from the evaluation stage's ``metrics.json`` (means over seeds, same test split).
    """
    records = [(StageRecord.read(d), Path(d)) for d in stage_dirs]
    register_params = {"promotion": policy.to_dict(), "registry": {"model_name": model_name}}
    # The parent's params: every stage's configs, so the run is rebuilt from its parent alone.
    params = {record.stage: record.params for record, _ in records} | {REGISTER_STAGE: register_params}
    parent = target.parent(data_version, params)
    for record, stage_dir in records:
        _log_stage(target, parent, record, stage_dir)
    log_run_record(run_record(records, Path(evaluation_dir)), parent, target.uri)
    with stage_run(target.uri, parent, REGISTER_STAGE, register_params) as run_id:
        decision = _register_and_gate(target, run_id, processed, gr_model_dir, evaluation_dir,
                                      model_name, policy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = json.loads(decision.to_json())
    write_json_atomic(out / "decision.json", record)
    write_text_atomic(out / "decision.md", f"# Promotion gate: {model_name}\n\n"
                      f"{format_history([decision])}\n")
    finish_run(target.uri, parent)
    return record


def run_record(records: list[tuple[StageRecord, Path]], evaluation_dir: Path) -> Any:
    """The run's ``grmodel.reproduce.RunRecord`` (what ``grmodel reproduce RUN_ID`` re-runs): the
    data version and its commit, the ingest options, each model's first-seed config, and the
    test metrics of those runs beside the median and oracle rows."""

    by_stage = {record.stage: record for record, _ in records}
    data = by_stage["fetch_data"].params["data"]
    report = json.loads((evaluation_dir / "report.json").read_text())
    first = {}
    for run in report["runs"]:
        first.setdefault(run["row"], run)
    metrics = {row: run["test"] for row, run in first.items()} | report["reference_results"]
    return RunRecord(
        data_version=data["data_version"], data_git_rev=data.get("git_rev"),
        ingest=by_stage["ingest"].params["ingest"],
        models={row: run["config"] for row, run in first.items()},
        metrics=metrics, eval=report["eval_config"],
    )


def close_tracking(target: TrackingTarget, state: str, error: str = "") -> None:
    """Mark the parent run with the pipeline's final ``state`` (SUCCEEDED, FAILED, ...)."""
    parent = target.parent("unknown")
    client = connect(target.uri)
    client.set_tag(parent, PIPELINE_STATUS_TAG, state)
    if error:
        client.set_tag(parent, "pipeline_error", error[:5000])
    finish_run(target.uri, parent, failed=state != "SUCCEEDED")


def select_gr_seed(gr_model_dir: str | Path) -> Path:
    """The GR run to register: the seed with the best validation score (never the test's)."""
    candidates = []
    for run in sorted(Path(gr_model_dir).glob("seed*")):
        path = run / TRAINING_RECORD
        if path.is_file():
            record = json.loads(path.read_text())
            metric = record["config"]["train"]["select_metric"]
            score = record["best_valid"][metric]
            candidates.append((score if metric == "mae" else -score, run.name, run))
    if not candidates:
        raise StageError(f"{gr_model_dir}: no finished GR run (rule: seed<k>/{TRAINING_RECORD})")
    return min(candidates)[2]


def _register_and_gate(target: TrackingTarget, run_id: str, processed: str | Path,
                       gr_model_dir: str | Path, evaluation_dir: str | Path, model_name: str,
                       policy: Any) -> Any:
    client = connect(target.uri)
    data = Path(processed)
    existing = client.search_model_versions(
        f"name = {sql_string(model_name)} and tags.{PIPELINE_RUN_ID} = {sql_string(target.pipeline_run_id)}")
    if existing:  # a retried step: judge the version this pipeline run registered
        version = min(existing, key=lambda v: int(v.version)).version
        log.info("%s version %s was registered by this pipeline run already", model_name, version)
    else:
        chosen = select_gr_seed(gr_model_dir)
        registry.log_model(chosen, data, name=GR)
        version = registry.register_model(model_name, run_id, GR, target.uri).version
    metrics_path = Path(evaluation_dir) / "metrics.json"
    if not metrics_path.is_file():
        raise StageError(f"{metrics_path}: not found (rule: the evaluate stage writes it)")
    baselines = json.loads(metrics_path.read_text())
    decision = registry.gate(model_name, version, data, baselines=baselines, policy=policy,
                             tracking_uri=target.uri)
    log.info("%s version %s: %s", model_name, version, decision.verdict)
    return decision


def _log_stage(target: TrackingTarget, parent: str, record: StageRecord, stage_dir: Path) -> None:
    client = connect(target.uri)
    experiment_id = client.get_run(parent).info.experiment_id
    done = client.search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = {sql_string(parent)} and tags.stage = {sql_string(record.stage)}"
        " and attributes.status = 'FINISHED'", max_results=1)
    if done:
        return
    with stage_run(target.uri, parent, record.stage, record.params) as run_id:
        client.log_metric(run_id, "stage_seconds", max(record.ended - record.started, 0.0))
        for name, value in record.metrics.items():
            client.log_metric(run_id, name, float(value))
        for prefix, history in record.histories.items():
            log_history(history, prefix=prefix, run_id=run_id)
        if record.artifacts:
            log_artifacts([stage_dir / a for a in record.artifacts], run_id=run_id)


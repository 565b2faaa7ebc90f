"""The pipeline's last steps: the MLflow picture of the run, registration, the gate.

:func:`track_and_register` opens (or resumes) the parent run of the pipeline run, named
``<pipeline>-<UTC start>-<data version>`` and started when the run's first stage started. Each
stage's run goes under it, as the stage's ``stage.json`` says: a run the stage logged while it
ran (``grmodel.pipeline.live``) is nested as it is (tagged ``tracked=live``); a stage that ran
without reachable tracking is logged from its record, with its recorded start and end
(``tracked=backfilled``); a stage Kubeflow served from its cache (its record ended before this
run's uncached ``fetch_data`` started) is logged as ``tracked=cached``, naming the run that
computed it. Then, in a nested ``register`` run, GR and every baseline are logged as pyfunc
models, GR is registered as a new version with the alias ``challenger`` and the promotion gate
runs against the champion and this run's baselines. The parent gets the headline test metrics
of every row, the gate's decision and the report. Retrying it within one pipeline run neither
duplicates stage runs nor creates a second model version. :func:`close_tracking` (the
pipeline's exit handler) marks the parent run FINISHED or FAILED, also when a stage failed
before anything was tracked.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from grmodel import registry
from grmodel.atomic import write_json_atomic, write_text_atomic
from grmodel.datasource import DataRecord, dataset_inputs
from grmodel.pipeline.live import BACKFILLED, CACHED, TRACKED_TAG, StageTracking, unreachable
from grmodel.pipeline.stages.drift import DRIFT_STAGE
from grmodel.pipeline.stages.plan import GR
from grmodel.pipeline.stages.record import StageError, StageRecord
from grmodel.redact import redact
from grmodel.registry import format_history
from grmodel.reproduce import RunRecord, log_run_record
from grmodel.tracking import (
    DATA_VERSION,
    LINEAGE_TAGS,
    PIPELINE_RUN_ID,
    STAGE,
    connect,
    finish_run,
    git_commit,
    log_artifacts,
    log_dataset_inputs,
    log_history,
    metric_key,
    sql_string,
    stage_run,
    start_pipeline_run,
)
from grmodel.training.records import TRAINING_RECORD

log = logging.getLogger(__name__)

REGISTER_STAGE = "register"
FETCH_STAGE = "fetch_data"  # never cached: it starts every pipeline run
TRAIN_PREFIX = "train_"
PIPELINE_STATUS_TAG = "pipeline_status"
UNRESOLVED = "unresolved"  # the data version of a run that failed before resolving one
REPORT_DIR = "report"  # the evaluation report's files in the parent run


@dataclass(frozen=True)
class TrackingTarget:
    """Where a pipeline run is tracked: the MLflow server or store, experiment and run id."""

    uri: str
    pipeline_run_id: str
    experiment: str = "grmodel"
    artifact_root: str = ""  # required by database URIs (sqlite:///...), optional for servers
    pipeline: str = "grmodel"  # the pipeline's name, the first part of the parent run's name

    def __post_init__(self) -> None:
        if not self.uri:
            raise StageError("MLflow tracking URI is empty (rule: the pipeline tracks every run;"
                             " set mlflow_tracking_uri)")
        if not self.pipeline_run_id:
            raise StageError("pipeline run id is empty (rule: it keys the MLflow parent run)")

    def parent(self, data_version: str, params: dict[str, Any] | None = None,
               started: float | None = None) -> str:
        """The parent run (created when missing, started at ``started``, default now)."""
        started = time.time() if started is None else started
        return start_pipeline_run(
            self.uri, pipeline_run_id=self.pipeline_run_id, data_version=data_version,
            experiment=self.experiment, artifact_root=self.artifact_root or None, configs=params,
            run_name=parent_run_name(self.pipeline, started, data_version), start_time=started,
        )

    def for_stage(self, data_version: str = "") -> StageTracking:
        """What a stage needs to log its own run (no pipeline run id: it would defeat caching)."""
        return StageTracking(self.uri, self.experiment, self.artifact_root, data_version)


def parent_run_name(pipeline: str, started: float, data_version: str) -> str:
    """``grmodel-gr-20261201T071502Z-3f2a9c1b``: pipeline, UTC start, short data version."""
    when = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    short = data_version.removesuffix(".dir")[:8] if data_version != UNRESOLVED else UNRESOLVED
    return f"{pipeline}-{when}-{short or UNRESOLVED}"


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
    fetched = next((r for r, _ in records if r.stage == FETCH_STAGE), None)
    if fetched is None:
        raise StageError(f"no {FETCH_STAGE} record among the stage outputs (rule: it starts"
                         " every pipeline run)")
    # Checked first: MLflow's client would retry an unreachable server for minutes.
    reason = unreachable(target.uri)
    if reason:
        raise StageError(f"MLflow {redact(target.uri)} is unreachable ({redact(reason)}); nothing"
                         " was tracked or registered (rule: the register step needs the tracking"
                         " server; rerun it once the server is up)")
    register_params = {"promotion": policy.to_dict(), "registry": {"model_name": model_name}}
    # The parent's params: every stage's configs, so the run is rebuilt from its parent alone.
    params = {record.stage: record.params for record, _ in records} | {REGISTER_STAGE: register_params}
    parent = target.parent(data_version, params, started=fetched.started)
    end_killed_attempts(target, parent)
    for record, stage_dir in records:
        nest_stage_run(target, parent, record, stage_dir, cached=is_cache_hit(record, fetched))
    reproducible = run_record(records, Path(evaluation_dir))
    log_run_record(reproducible, parent, target.uri)
    log_dataset_inputs(dataset_inputs(processed, reproducible.data_record), run_id=parent)
    _flag_drift(target, parent, records)
    baselines = {r.stage.removeprefix(TRAIN_PREFIX): d for r, d in records
                 if r.stage.startswith(TRAIN_PREFIX) and r.stage != TRAIN_PREFIX + GR}
    with stage_run(target.uri, parent, REGISTER_STAGE, register_params) as run_id:
        decision = _register_and_gate(target, run_id, processed, gr_model_dir, evaluation_dir,
                                      model_name, policy)
        _log_decay(decision, run_id, target.uri)
        _log_baselines(baselines, Path(processed))
    _summarize(target, parent, Path(evaluation_dir), decision)
    _log_decay(decision, parent, target.uri)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = json.loads(decision.to_json())
    write_json_atomic(out / "decision.json", record)
    write_text_atomic(out / "decision.md", decision_markdown(decision))
    log_artifacts([out / "decision.md"], REPORT_DIR, run_id=parent)  # beside report.html
    finish_run(target.uri, parent)
    return record


def run_record(records: list[tuple[StageRecord, Path]], evaluation_dir: Path) -> Any:
    """The run's ``grmodel.reproduce.RunRecord`` (what ``grmodel reproduce RUN_ID`` re-runs): the
    data version and what it was read from (the fetch's ``datasource.DataRecord``), the ingest
    options, each model's first-seed config, the code's commit, and the test metrics of those
    runs beside the median and oracle rows."""

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
        data=DataRecord.from_dict(data).to_dict(), git_commit=git_commit(),
    )


def open_pipeline_run(target: TrackingTarget, fetched_dir: str | Path) -> str | None:
    """Open the pipeline run's parent as soon as ``fetch_data`` has resolved the data version:
    named with it, started when the fetch started, the fetch's run under it. A run that fails
    later is then found by the exit handler under that name. Tracking never fails the step:
    with MLflow unreachable this is left to the register step (None)."""
    record = StageRecord.read(fetched_dir)
    version = record.params["data"]["data_version"]
    reason = unreachable(target.uri)
    if reason:
        log.warning("MLflow %s is unreachable (%s): the parent run opens at the register step",
                    redact(target.uri), redact(reason))
        return None
    try:
        parent = target.parent(version, started=record.started)
        nest_stage_run(target, parent, record, Path(fetched_dir))
    except Exception as exc:  # noqa: BLE001 - tracking never fails the step
        log.warning("MLflow %s: cannot open the parent run (%s); the register step will",
                    redact(target.uri), redact(str(exc)))
        return None
    return parent


def _flag_drift(target: TrackingTarget, parent: str, records: list[tuple[StageRecord, Path]]
                ) -> None:
    """The drift stage's verdict on the parent run: tag ``drift.verdict`` (no reference, no
    drift, drift) and metric ``drift.detected``."""
    found = next((r for r, _ in records if r.stage == DRIFT_STAGE), None)
    if found is None:
        return
    client = connect(target.uri)
    client.set_tag(parent, "drift.verdict", found.params["drift"]["verdict"])
    client.log_metric(parent, "drift.detected", float(found.metrics.get("drift_detected", 0.0)))


def close_tracking(target: TrackingTarget, state: str, error: str = "") -> None:
    """Mark the parent run with the pipeline's final ``state`` (SUCCEEDED, FAILED, ...): the
    one ``fetch_data`` opened (named with its data version), else one named ``…-unresolved``
    (the run failed before it resolved its data); the runs its stages logged that are not under
    it yet (the run failed before the register step) are put under it."""
    parent = _existing_parent(target) or target.parent(UNRESOLVED)
    adopt_stage_runs(target, parent)
    client = connect(target.uri)
    client.set_tag(parent, PIPELINE_STATUS_TAG, state)
    if error:
        client.set_tag(parent, "pipeline_error", redact(error)[:5000])
    finish_run(target.uri, parent, failed=state != "SUCCEEDED")


def _existing_parent(target: TrackingTarget) -> str | None:
    client = connect(target.uri)
    experiment = client.get_experiment_by_name(target.experiment)
    if experiment is None:
        return None
    found = client.search_runs([experiment.experiment_id],
                               f"tags.{PIPELINE_RUN_ID} = {sql_string(target.pipeline_run_id)}"
                               " and tags.run_kind = 'pipeline'", max_results=1)
    return found[0].info.run_id if found else None


def adopt_stage_runs(target: TrackingTarget, parent: str) -> list[str]:
    """Put under ``parent`` the stage runs of its pipeline run that are under no run: those
    tagged with its pipeline run id (``fetch_data``, never cached) and, as the cached stages
    cannot take that id (it would defeat the cache), the stage runs on the parent's data
    version that started after it and are nobody's child. (Two pipeline runs on one data
    version at once in one experiment cannot be told apart this way.) A stage run still RUNNING
    when its pipeline ended was killed with it: marked KILLED."""
    client = connect(target.uri)
    parent_run = client.get_run(parent)
    experiment = [parent_run.info.experiment_id]
    runs = client.search_runs(experiment, "tags.run_kind = 'stage' and"
                              f" tags.{PIPELINE_RUN_ID} = {sql_string(target.pipeline_run_id)}")
    version = parent_run.data.tags.get(DATA_VERSION, UNRESOLVED)
    if version != UNRESOLVED:
        runs += client.search_runs(
            experiment, f"tags.run_kind = 'stage' and tags.{DATA_VERSION} = {sql_string(version)}"
            f" and attributes.start_time >= {parent_run.info.start_time}")
    tags = {k: parent_run.data.tags[k] for k in LINEAGE_TAGS if k in parent_run.data.tags}
    adopted: list[str] = []
    for run in runs:
        if run.info.run_id in adopted:
            continue
        if "mlflow.parentRunId" in run.data.tags:
            continue
        for key, value in (tags | {"mlflow.parentRunId": parent}).items():
            client.set_tag(run.info.run_id, key, value)
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "KILLED")
        adopted.append(run.info.run_id)
    return adopted


def select_seed(model_dir: str | Path) -> Path:
    """The seed of a trained row to log or register: the one with the best validation score
    (never the test's)."""

    candidates = []
    for run in sorted(Path(model_dir).glob("seed*")):
        path = run / TRAINING_RECORD
        if path.is_file():
            record = json.loads(path.read_text())
            metric = record["config"]["train"]["select_metric"]
            score = record["best_valid"][metric]
            candidates.append((score if metric == "mae" else -score, run.name, run))
    if not candidates:
        raise StageError(f"{model_dir}: no finished run (rule: seed<k>/{TRAINING_RECORD})")
    return min(candidates)[2]


def decision_markdown(decision: Any) -> str:
    """The gate's decision for people: the table, and the champion's decay when there is one
    (flagged beyond the policy's threshold)."""
    decay = registry.decay_line(decision)
    flag = "**Champion decay flagged.** " if decision.decay_flagged else ""
    return (f"# Promotion gate: {decision.model}\n\n{format_history([decision])}\n"
            + (f"\n{flag}{decay}\n" if decay else ""))


def _log_decay(decision: Any, run_id: str, uri: str) -> None:
    """The champion's decay as metrics (``champion.mae``, ``champion.mae_at_promotion``,
    ``champion.decay``) and the tag ``champion.decay_flagged``, in ``run_id``."""
    decay = decision.champion_decay
    if not decay:
        return
    client = connect(uri)
    now = int(time.time() * 1000)
    values = {"champion.mae": decay.get("mae"), "champion.mae_at_promotion":
              decay.get("mae_at_promotion"), "champion.decay": decay.get("decay")}
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()
                                      if v is not None])
    client.set_tag(run_id, "champion.version", str(decay["version"]))
    client.set_tag(run_id, "champion.decay_flagged", str(bool(decay.get("flagged"))).lower())


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
        chosen = select_seed(gr_model_dir)
        registry.log_model(chosen, data, name=GR)
        version = registry.register_model(model_name, run_id, GR, target.uri,
                                          by=f"pipeline run {target.pipeline_run_id}").version
    metrics_path = Path(evaluation_dir) / "metrics.json"
    if not metrics_path.is_file():
        raise StageError(f"{metrics_path}: not found (rule: the evaluate stage writes it)")
    baselines = registry.check_metrics(json.loads(metrics_path.read_text()), str(metrics_path))
    # A baseline metrics.json marks collapsed is no bar; the evaluation report says why.
    summary = json.loads((Path(evaluation_dir) / "report.json").read_text())["summary"]
    for row, values in summary.items():
        if baselines.get(metric_key(row), {}).get("collapsed") and values.get("collapsed"):
            baselines[metric_key(row)]["collapsed_because"] = "; ".join(values["collapsed"])
    decision = registry.gate(model_name, version, data, baselines=baselines, policy=policy,
                             tracking_uri=target.uri, by=f"pipeline run {target.pipeline_run_id}")
    log.info("%s version %s: %s", model_name, version, decision.verdict)
    if decision.champion_decay:
        (log.warning if decision.decay_flagged else log.info)("%s", registry.decay_line(decision))
    return decision


def _log_baselines(model_dirs: dict[str, Path], data: Path) -> None:
    """Each baseline's best seed as a pyfunc model of the active run, named by its row."""

    for row, model_dir in sorted(model_dirs.items()):
        registry.log_model(select_seed(model_dir), data, name=row)


def _summarize(target: TrackingTarget, parent: str, evaluation_dir: Path, decision: Any) -> None:
    """The parent run at a glance: every row's headline test metrics, the gate's verdict and
    the report (its HTML page is what the MLflow UI shows)."""

    client = connect(target.uri)
    report = json.loads((evaluation_dir / "report.json").read_text())
    now = int(time.time() * 1000)
    metrics = [Metric(f"test.{metric_key(row)}.{name}", float(s[name]["mean"]), now, 0)
               for row, s in report["summary"].items()
               for name in ("mae", "xauc", "xauc_tie_aware") if s[name]["mean"] is not None]
    metrics.append(Metric("gate.promoted", float(decision.promoted), now, 0))
    # Each required baseline left out of must-beat (it collapsed), by name.
    for check in decision.checks:
        if check.get("skipped"):
            client.set_tag(parent, f"gate.left_out.{check['baseline']}", check["detail"][:5000])
    client.log_batch(parent, metrics=metrics)
    for key, value in {"gate.verdict": decision.verdict, "gate.model": decision.model,
                       "gate.challenger_version": decision.challenger_version}.items():
        client.set_tag(parent, key, value)
    files = [evaluation_dir / f for f in ("report.html", "report.md", "report.json", "figures")]
    log_artifacts([f for f in files if f.exists()], REPORT_DIR, run_id=parent)
    client.set_tag(parent, "report", f"{client.get_run(parent).info.artifact_uri}/{REPORT_DIR}/report.html")


def end_killed_attempts(target: TrackingTarget, parent: str) -> None:
    """Mark KILLED the runs under ``parent`` still RUNNING from an attempt of this step that was
    killed (only one attempt of a pipeline run's register step runs at a time), so a retry
    leaves no run looking alive; the retry logs its own."""
    client = connect(target.uri)
    experiment = client.get_run(parent).info.experiment_id
    for run in client.search_runs([experiment], f"tags.mlflow.parentRunId = {sql_string(parent)}"
                                  " and attributes.status = 'RUNNING'"):
        log.info("run %s (%s) of a killed attempt: marked KILLED", run.info.run_id,
                 run.data.tags.get("stage", "?"))
        client.set_terminated(run.info.run_id, "KILLED")


def is_cache_hit(record: StageRecord, fetched: StageRecord) -> bool:
    """Whether Kubeflow served ``record``'s stage from its cache: it ended before this run's
    ``fetch_data`` (never cached) started."""
    return record.stage != FETCH_STAGE and record.ended < fetched.started


def nest_stage_run(target: TrackingTarget, parent: str, record: StageRecord, stage_dir: Path,
                   cached: bool = False) -> None:
    """Put the stage's run under ``parent``: nest the run it logged live, or log one from its
    record (backfilled, or a cache hit)."""

    client = connect(target.uri)
    parent_run = client.get_run(parent)
    done = client.search_runs(
        [parent_run.info.experiment_id],
        f"tags.mlflow.parentRunId = {sql_string(parent)} and tags.{STAGE} = {sql_string(record.stage)}"
        " and attributes.status = 'FINISHED'", max_results=1)
    if done:
        return
    live = None
    if record.mlflow_run_id and not cached:
        try:
            live = client.get_run(record.mlflow_run_id)
        except MlflowException:  # logged to another tracking server than this one
            live = None
    if live is not None and live.info.status == "FINISHED":
        tags = {k: parent_run.data.tags[k] for k in LINEAGE_TAGS if k in parent_run.data.tags}
        for key, value in (tags | {"mlflow.parentRunId": parent}).items():
            client.set_tag(record.mlflow_run_id, key, value)
        return
    _log_from_record(target, parent, record, stage_dir, CACHED if cached else BACKFILLED)


def _log_from_record(target: TrackingTarget, parent: str, record: StageRecord, stage_dir: Path,
                     how: str) -> None:
    """A stage run made from its record: backfilled with the stage's own start and end, or a
    cache hit, which took no time in this run and names the run that computed it."""

    client = connect(target.uri)
    backfilled = how == BACKFILLED  # with the stage's own start and end, not this step's
    with stage_run(target.uri, parent, record.stage, record.params,
                   start_time=record.started if backfilled else None) as run_id:
        client.set_tag(run_id, TRACKED_TAG, how)
        if how == CACHED and record.mlflow_run_id:
            client.set_tag(run_id, "cached_from_run", record.mlflow_run_id)
        client.log_metric(run_id, "stage_seconds", max(record.ended - record.started, 0.0))
        for name, value in record.metrics.items():
            client.log_metric(run_id, name, float(value))
        for prefix, history in record.histories.items():
            log_history(history, prefix=prefix, run_id=run_id)
        if record.artifacts:
            log_artifacts([stage_dir / a for a in record.artifacts], run_id=run_id)
    if backfilled:
        client.set_terminated(run_id, "FINISHED", end_time=int(record.ended * 1000))

"""MLflow tracking: one parent run per pipeline run, one nested run per stage.

A pipeline run may span processes (one Kubeflow component per stage), so runs are addressed by
id: :func:`start_pipeline_run` creates the parent and returns its id, each stage opens
:func:`stage_run` with that id, and :func:`finish_run` closes the parent. Inside ``stage_run``
the stage is MLflow's *active* run, so the ``log_*`` helpers (and ``mlflow.*`` calls such as
logging a model) write to it; every helper also takes an explicit ``run_id``.

Every run carries the tags a result needs to be traced back: the git commit of the code, the
grmodel version, the data version (the ``data.dvc`` hash, grmodel.versioning) and the pipeline
run id (:data:`LINEAGE_TAGS`).

The tracking URI may be anything MLflow accepts (``sqlite:///path.db``, ``http://host:port``).
Starting a run sets the process's MLflow tracking URI to it, as ``mlflow.set_tracking_uri`` does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grmodel import __version__
from grmodel.redact import redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from grmodel.training.records import TrainResult

DEFAULT_EXPERIMENT = "grmodel"
# Tag names shared by parent and stage runs (searchable: tags.pipeline_run_id = '...').
GIT_COMMIT = "git_commit"
VERSION = "grmodel_version"
DATA_VERSION = "data_version"
PIPELINE_RUN_ID = "pipeline_run_id"
RUN_KIND = "run_kind"  # "pipeline" or "stage"
STAGE = "stage"
# What traces a result to its code and data: stage runs inherit these from their pipeline run,
# and a registered model version copies them from the run that logged it.
LINEAGE_TAGS = (GIT_COMMIT, VERSION, DATA_VERSION, PIPELINE_RUN_ID)
GIT_COMMIT_ENV = "GRMODEL_GIT_COMMIT"  # set by docker/ builds
DIRTY_SUFFIX = "-dirty"  # a commit whose checkout had uncommitted changes to tracked files
EPOCH_TIME = "time"  # a history record's wall-clock end (Unix seconds), when it was recorded

# MLflow limits (mlflow.utils.validation): params per batch call and param value length.
_PARAMS_PER_BATCH = 100
_MAX_PARAM_LENGTH = 6000


def connect(tracking_uri: str | None = None) -> MlflowClient:
    """Point this process's MLflow at ``tracking_uri`` and return a client for it.

    None keeps MLflow's current URI (``MLFLOW_TRACKING_URI`` or an earlier ``connect``). The URI
    is set process-wide because MLflow's model logging and registration read it from there.
    """
    # lazy: mlflow takes seconds to import and is needed only when a run is tracked; untracked
    # stages and commands use this module's names (tags, EPOCH_TIME, metric_key, git_commit)
    import mlflow

    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient()


def git_commit(path: str | Path | None = None) -> str:
    """The commit checked out where ``path`` lies (default: this package's source), with
    ``-dirty`` appended when tracked files differ from it (uncommitted changes: the code that
    ran is not that commit's); in an image, which holds no git checkout, the commit it was
    built from (``GRMODEL_GIT_COMMIT``, marked the same way); else "unknown"."""
    if path is None and os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                 cwd=cwd, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):  # no git, or not a repository
        return "unknown"
    commit = out.stdout.strip()
    if not commit:
        return "unknown"
    return commit + (DIRTY_SUFFIX if changed.stdout.strip() else "")


def commit_tags(commit: str) -> dict[str, str]:
    """The run tags of a ``git_commit`` value: ``git_commit`` as it is (``-dirty`` included)
    and MLflow's own source commit, the bare hash the UI links."""
    return {GIT_COMMIT: commit, "mlflow.source.git.commit": commit.removesuffix(DIRTY_SUFFIX)}


def ensure_experiment(
    tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT, artifact_root: str | Path | None = None
) -> str:
    """The id of ``experiment``, created with artifacts under ``<artifact_root>/<experiment>``.

    Without ``artifact_root`` a tracking server's own artifact root is used; a database URI needs
    one, or MLflow would write artifacts to ``./mlruns`` of whatever directory the process runs in.
    """
    client = connect(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = None
    if artifact_root is not None and "://" in str(artifact_root):  # s3://..., file:///...
        location = f"{str(artifact_root).rstrip('/')}/{experiment}"
    elif artifact_root is not None:
        location = (Path(artifact_root).resolve() / experiment).as_uri()
    elif not tracking_uri.startswith(("http://", "https://")):
        raise ValueError(
            f"experiment {experiment!r} on {tracking_uri}: artifact_root is required"
            " (rule: a database tracking URI needs an explicit artifact location)"
        )
    return client.create_experiment(experiment, artifact_location=location)


def start_pipeline_run(
    tracking_uri: str,
    *,
    pipeline_run_id: str,
    data_version: str,
    experiment: str = DEFAULT_EXPERIMENT,
    artifact_root: str | Path | None = None,
    configs: dict[str, Any] | None = None,
    run_name: str | None = None,
    start_time: float | None = None,
) -> str:
    """The parent run of pipeline run ``pipeline_run_id``: created (started at ``start_time``,
    Unix seconds, default now), or resumed when it exists (a retried pipeline keeps one
    parent). Its params are ``configs`` flattened."""
    client = connect(tracking_uri)
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root)
    existing = client.search_runs(
        [experiment_id],
        f"tags.{PIPELINE_RUN_ID} = {sql_string(pipeline_run_id)} and tags.{RUN_KIND} = 'pipeline'",
        max_results=1,
    )
    if existing:
        run_id = existing[0].info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        tags = {
            **commit_tags(git_commit()),
            VERSION: __version__,
            DATA_VERSION: data_version,
            PIPELINE_RUN_ID: pipeline_run_id,
            RUN_KIND: "pipeline",
        }
        run = client.create_run(experiment_id, tags=tags, run_name=run_name or pipeline_run_id,
                                start_time=None if start_time is None else int(start_time * 1000))
        run_id = run.info.run_id
    if configs:
        log_configs(configs, run_id=run_id)
    return run_id


def finish_run(tracking_uri: str, run_id: str, failed: bool = False) -> None:
    connect(tracking_uri).set_terminated(run_id, "FAILED" if failed else "FINISHED")


@contextmanager
def pipeline_run(tracking_uri: str, **kwargs: Any) -> Iterator[str]:
    """``start_pipeline_run`` … ``finish_run`` for a pipeline that runs in one process."""
    run_id = start_pipeline_run(tracking_uri, **kwargs)
    try:
        yield run_id
    except BaseException:
        finish_run(tracking_uri, run_id, failed=True)
        raise
    finish_run(tracking_uri, run_id)


@contextmanager
def stage_run(
    tracking_uri: str, parent_run_id: str, stage: str, configs: dict[str, Any] | None = None,
    start_time: float | None = None,
) -> Iterator[str]:
    """A nested run for one stage, active inside the block; FAILED if the block raises.

    It inherits the parent's experiment and its commit, version, data and pipeline tags, and
    starts at ``start_time`` (Unix seconds; default now).
    """
    # lazy: mlflow, see connect
    import mlflow

    client = connect(tracking_uri)
    parent = client.get_run(parent_run_id)
    tags = {k: parent.data.tags[k] for k in LINEAGE_TAGS if k in parent.data.tags}
    tags.update({RUN_KIND: "stage", STAGE: stage, "mlflow.parentRunId": parent_run_id})
    run = client.create_run(parent.info.experiment_id, tags=tags, run_name=stage,
                            start_time=None if start_time is None else int(start_time * 1000))
    # start_run(run_id=...) makes it the active run; leaving the block ends it (FAILED on error).
    with mlflow.start_run(run_id=run.info.run_id):
        if configs:
            log_configs(configs)
        yield run.info.run_id


def flatten_config(config: Any, prefix: str = "") -> dict[str, str]:
    """``{"gr.train.lr": "0.0005", ...}`` from a dataclass or nested dict; lists as JSON."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        text = json.dumps(config) if isinstance(config, list | tuple) else str(config)
        return {prefix: text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 1] + "…"}
    flat: dict[str, str] = {}
    for key, value in config.items():
        flat.update(flatten_config(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def log_configs(configs: dict[str, Any], run_id: str | None = None) -> None:
    """Log each config (dataclass or dict) as params prefixed by its key: ``gr.train.lr``."""
    # lazy: mlflow, see connect
    from mlflow.entities import Param

    params = {}
    for name, config in configs.items():
        params.update(flatten_config(config, metric_key(name)))
    run_id = _run_id(run_id)
    items = [Param(k, redact(v)) for k, v in sorted(params.items())]
    client = connect()
    for start in range(0, len(items), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + _PARAMS_PER_BATCH])


def log_history(history: list[dict[str, Any]], prefix: str = "", run_id: str | None = None) -> None:
    """Per-epoch training curves: every numeric field of each record, at step = epoch, timed
    when the epoch ended (a record's ``time``, Unix seconds) or else now."""
    # lazy: mlflow, see connect
    from mlflow.entities import Metric

    metrics = [
        Metric(f"{prefix}{key}", float(value), _time_ms(record), int(record["epoch"]))
        for record in history
        for key, value in record.items()
        if key not in ("epoch", "step", EPOCH_TIME) and _is_number(value)
    ]
    connect().log_batch(_run_id(run_id), metrics=metrics)


def log_training(result: TrainResult, run_id: str | None = None) -> None:
    """A finished training run: its curves, best validation scores, speed and vocabulary."""
    log_history(result.history, run_id=run_id)
    summary = {f"best_valid_{k}": v for k, v in result.best_valid.items()}
    summary |= {"best_epoch": result.best_epoch, "train_seconds": result.train_seconds,
                "train_samples_per_second": result.samples_per_second}
    _log_metrics(summary, run_id)
    log_vocabulary(result.model_dir, run_id=run_id)


def log_results(results: dict[str, dict[str, Any]], run_id: str | None = None) -> None:
    """Final test metrics of every model (and the median/oracle rows): ``test.<model>.mae``."""
    flat = {}
    for name, row in results.items():
        key = f"test.{metric_key(name)}"
        for metric in ("mae", "xauc", "xauc_tie_aware"):
            if _is_number(row.get(metric)):
                flat[f"{key}.{metric}"] = row[metric]
        for metric, value in (row.get("oracle") or {}).items():
            if _is_number(value):
                flat[f"{key}.oracle_{metric}"] = value
    _log_metrics(flat, run_id)


def log_artifacts(paths: list[str | Path], artifact_path: str | None = None,
                  run_id: str | None = None) -> None:
    """Files and directories (reports, figures, validation results) under ``artifact_path``."""
    client, run_id = connect(), _run_id(run_id)
    for path in map(Path, paths):
        if path.is_dir():
            sub = f"{artifact_path}/{path.name}" if artifact_path else path.name
            client.log_artifacts(run_id, str(path), sub)
        elif path.is_file():
            client.log_artifact(run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"{path}: artifact to log not found")


def log_dataset_inputs(inputs: list[dict[str, str]], run_id: str | None = None) -> None:
    """Datasets the run used, as MLflow dataset inputs (the runs page's Dataset column): each
    a dict of ``name``, ``digest``, ``source_type``, ``source`` (JSON), ``context``
    (training, validation, testing) and optionally ``profile`` (JSON)."""
    # lazy: mlflow, see connect
    from mlflow.entities import Dataset, DatasetInput, InputTag

    datasets = [DatasetInput(Dataset(d["name"], d["digest"], d["source_type"], d["source"],
                                     profile=d.get("profile")),
                             [InputTag("mlflow.data.context", d["context"])]) for d in inputs]
    connect().log_inputs(_run_id(run_id), datasets=datasets)


def log_vocabulary(model_dir: str | Path, run_id: str | None = None) -> None:
    """The model's label state (GR: its vocabulary) as ``vocabulary/<model>.json``."""
    # lazy: checkpoint imports torch; the data stages log through this module without it
    from grmodel.checkpoint import META_FILE

    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (rule: a model directory holds {META_FILE})")
    meta = json.loads(path.read_text())
    connect().log_dict(_run_id(run_id), meta["label_state"], f"vocabulary/{meta['model_name']}.json")


def _log_metrics(values: dict[str, float], run_id: str | None) -> None:
    # lazy: mlflow, see connect
    from mlflow.entities import Metric

    now = _now_ms()
    metrics = [Metric(k, float(v), now, 0) for k, v in values.items()]
    connect().log_batch(_run_id(run_id), metrics=metrics)


def _run_id(run_id: str | None) -> str:
    if run_id is not None:
        return run_id
    # lazy: mlflow, see connect
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no run_id given and no active MLflow run (use tracking.stage_run)")
    return run.info.run_id


def metric_key(name: str) -> str:
    """MLflow keys allow letters, digits, ``_ - . /`` and spaces: "oracle (median)" → oracle_median."""
    return re.sub(r"[^0-9A-Za-z_\-./]+", "_", name.strip()).strip("_")


def sql_string(value: str) -> str:
    """A quoted literal for MLflow search filters."""
    return "'" + value.replace("'", "\\'") + "'"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _time_ms(record: dict[str, Any]) -> int:
    when = record.get(EPOCH_TIME)
    return int(when * 1000) if _is_number(when) else _now_ms()

"""Re-run a recorded run on the data version it used and compare every metric exactly.

A run is recorded as a small JSON document, the :class:`RunRecord`: the data version and
what it was read from (``data``: a ``datasource.DataRecord``: a DVC version and its commit, the
generator's settings, a snapshot in a DVC remote, or the partitions of a window of logs with
their hashes), the ingest options, each model's full ``RunConfig`` (seed included), the
evaluation options, the code's git commit, and the metrics it produced. The tracking layer
keeps it with the MLflow run (:func:`log_run_record`); :func:`record_from_mlflow` reads it back.

:func:`reproduce` obtains exactly that data (a DVC version from the workspace when it holds
it, else through the DVC Python API at the recorded git commit; any other source through
``datasource.obtain``, checked against the recorded hashes), re-runs ingest → train →
evaluate with the recorded settings, and compares every metric. On CPU with the same seed and
thread count the metrics match bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grmodel import versioning
from grmodel.atomic import through_json
from grmodel.config import EvalConfig, RunConfig
from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.datasource import DataRecord, obtain
from grmodel.evaluate import evaluate_models
from grmodel.training.loop import train_model
from grmodel.training.records import MISSING, differences

RECORD_FORMAT = "grmodel.run_record/1"
# What the tracking layer logs with an MLflow run (see log_run_record).
RECORD_ARTIFACT = "run_record.json"
TAG_DATA_VERSION = "data_version"
TAG_DATA_GIT_REV = "data_git_rev"


class ReproduceError(ValueError):
    """A run record that cannot be read or re-run (one clear message)."""


@dataclass
class RunRecord:
    """Everything needed to re-run a run, and what it measured."""

    data_version: str  # DVC's hash of data/, as data.dvc records it
    data_git_rev: str | None  # a git commit whose data.dvc records data_version
    ingest: dict[str, Any]  # IngestConfig fields
    models: dict[str, dict[str, Any]]  # model name -> RunConfig.to_dict() (train.seed inside)
    metrics: dict[str, Any]  # evaluate_models() output, through JSON
    eval: dict[str, Any] = field(default_factory=lambda: dataclasses.asdict(EvalConfig()))
    # What the data was read from: datasource.DataRecord.to_dict(); {} in records written
    # before other sources were recorded (a dvc version then).
    data: dict[str, Any] = field(default_factory=dict)
    git_commit: str = ""  # the code's commit ("-dirty": with uncommitted changes); "" unknown

    @property
    def data_record(self) -> DataRecord:
        if self.data:
            return DataRecord.from_dict(self.data)
        return DataRecord("dvc", self.data_version, git_rev=self.data_git_rev)

    @property
    def seeds(self) -> dict[str, Any]:
        return {"ingest": self.ingest.get("seed"),
                **{name: cfg["train"]["seed"] for name, cfg in self.models.items()}}

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECORD_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "run record") -> RunRecord:
        if not isinstance(raw, dict) or raw.get("format") != RECORD_FORMAT:
            raise ReproduceError(f"{source}: not a run record (rule: format {RECORD_FORMAT!r})")
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required + ["eval"] if n not in raw]
        if missing:
            raise ReproduceError(f"{source}: missing key(s) {missing}")
        return cls(**{n: raw[n] for n in names if n in raw})


@dataclass
class MetricRow:
    """One metric of one model: a scalar, or a nested block compared leaf by leaf."""

    name: str  # "<model>/<metric>"
    recorded: Any
    reproduced: Any
    differences: list[str]  # leaf paths that differ; empty when the metric matches exactly

    @property
    def match(self) -> bool:
        return not self.differences


@dataclass
class Reproduction:
    record: RunRecord
    metrics: dict[str, Any]
    rows: list[MetricRow]
    data_source: str  # where the data was read from: "workspace", "export", or datasource.obtain's

    @property
    def all_match(self) -> bool:
        return all(row.match for row in self.rows)


# --------------------------------------------------------------------------------- runs


def train_and_evaluate(
    raw_dir: str | Path,
    workdir: str | Path,
    ingest: dict[str, Any],
    models: dict[str, RunConfig],
    eval_config: EvalConfig,
) -> dict[str, Any]:
    """Ingest ``raw_dir``, train each model, evaluate them all on the test split."""
    workdir = Path(workdir)
    processed = workdir / "processed"
    ingest_kuairec(raw_dir, processed, IngestConfig.from_dict(ingest))
    model_dirs: dict[str, str | Path] = {}
    for name, config in models.items():
        data = dataclasses.replace(config.data, processed_dir=str(processed))
        model_dirs[name] = train_model(dataclasses.replace(config, data=data),
                                       workdir / "models" / name).model_dir
    return through_json(evaluate_models(processed, model_dirs, eval_config))


def record_run(
    repo_root: str | Path,
    workdir: str | Path,
    models: dict[str, RunConfig],
    ingest: dict[str, Any] | None = None,
    eval_config: EvalConfig | None = None,
    data_version: str | None = None,
) -> RunRecord:
    """Run on the workspace's ``data/`` (refused unless it is exactly ``data_version``, or
    the version ``data.dvc`` records) and return the record of the run."""
    version = versioning.require_version(repo_root, data_version)
    ingest_options = through_json(dataclasses.asdict(IngestConfig(**(ingest or {}))))
    eval_config = eval_config or EvalConfig()
    metrics = train_and_evaluate(Path(repo_root) / versioning.DATA_DIR, workdir, ingest_options,
                                 models, eval_config)
    return RunRecord(
        data_version=version,
        data_git_rev=versioning.version_rev(repo_root, version),
        ingest=ingest_options,
        models={name: through_json(cfg.to_dict()) for name, cfg in models.items()},
        metrics=metrics,
        eval=dataclasses.asdict(eval_config),
    )


def reproduce(record: RunRecord, repo_root: str | Path, workdir: str | Path) -> Reproduction:
    """Re-run ``record`` on its data version and compare every metric exactly."""
    try:
        models = {name: RunConfig.from_dict(cfg) for name, cfg in record.models.items()}
        eval_config = EvalConfig(**record.eval)
    except (TypeError, ValueError) as exc:
        raise ReproduceError(f"run record: config no longer loads ({exc})") from None
    root, workdir = Path(repo_root).resolve(), Path(workdir)
    data = record.data_record
    if data.source != "dvc" or data.snapshot:
        raw_dir = workdir / "raw"
        try:
            source = obtain(data, raw_dir, root)
        except ValueError as exc:  # DataSourceError, VersioningError, a bad input
            raise ReproduceError(f"run record: its data cannot be read again: {exc}") from None
    elif (status := versioning.workspace_status(root)).version == record.data_version \
            and status.matches:
        raw_dir, source = root / versioning.DATA_DIR, "workspace"
    else:  # read exactly that version at its git commit, leaving the workspace alone
        raw_dir, source = workdir / "raw", "export"
        versioning.export_version(root, record.data_version, raw_dir, record.data_git_rev)
    metrics = train_and_evaluate(raw_dir, workdir, record.ingest, models, eval_config)
    return Reproduction(record, metrics, compare_metrics(record.metrics, metrics), source)


# ---------------------------------------------------------------------------- comparing


def compare_metrics(recorded: dict[str, Any], reproduced: dict[str, Any]) -> list[MetricRow]:
    """One row per (model, top-level metric); nested blocks are compared leaf by leaf."""
    rows = []
    for model in _union(recorded, reproduced):
        before, after = recorded.get(model, {}), reproduced.get(model, {})
        for metric in _union(before, after):
            a, b = before.get(metric, MISSING), after.get(metric, MISSING)
            rows.append(MetricRow(f"{model}/{metric}", a, b, differences(a, b, metric)))
    return rows


def format_report(reproduction: Reproduction) -> str:
    """A Markdown table (metric, recorded, reproduced, match) and a verdict line."""
    record = reproduction.record
    data = record.data_record
    origin = (f"git {(record.data_git_rev or '?')[:12]}" if data.source == "dvc"
              else data.describe())
    lines = [
        f"data version {record.data_version} ({origin}, read from the"
        f" {reproduction.data_source}); seeds {record.seeds}",
        "",
        "| metric | recorded | reproduced | match |",
        "|---|---:|---:|:---:|",
    ]
    for row in reproduction.rows:
        mark = "yes" if row.match else "NO: " + ", ".join(row.differences[:5])
        lines.append(f"| {row.name} | {_show(row.recorded)} | {_show(row.reproduced)} | {mark} |")
    bad = [row.name for row in reproduction.rows if not row.match]
    lines.append("")
    lines.append(f"all {len(reproduction.rows)} metrics match exactly" if not bad else
                 f"{len(bad)} of {len(reproduction.rows)} metrics differ: {', '.join(bad)}")
    return "\n".join(lines)


def _union(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [*a, *(k for k in b if k not in a)]


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return f"{{{len(value)} fields}}"
    if isinstance(value, list | tuple):
        return f"[{len(value)} values]"
    return repr(value)


# ------------------------------------------------------------------------------- MLflow


def log_run_record(record: RunRecord, run_id: str | None = None,
                   tracking_uri: str | None = None) -> None:
    """Attach ``record`` to MLflow run ``run_id`` (default: the active run): tags
    ``data_version`` and ``data_git_rev`` (for search) and the artifact ``run_record.json``
    (what ``grmodel reproduce`` reads)."""
    # lazy: mlflow (seconds to import) only for MLflow runs; a run_record.json file needs none
    import mlflow

    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise ReproduceError("log_run_record: no active MLflow run and no run_id given")
        run_id = active.info.run_id
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    client.set_tag(run_id, TAG_DATA_VERSION, record.data_version)
    client.set_tag(run_id, TAG_DATA_GIT_REV, record.data_git_rev or "")
    client.log_dict(run_id, record.to_dict(), RECORD_ARTIFACT)


def record_from_mlflow(run_id: str, tracking_uri: str | None = None) -> RunRecord:
    """The :class:`RunRecord` of a past MLflow run (its ``run_record.json`` artifact, checked
    against its ``data_version`` tag)."""
    # lazy: mlflow only for MLflow runs (see log_run_record)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri)
    source = f"MLflow run {run_id}"
    try:
        run = client.get_run(run_id)
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, RECORD_ARTIFACT, tmp)
            raw = json.loads(Path(path).read_text())
    except (MlflowException, OSError) as exc:
        raise ReproduceError(f"{source}: cannot read its {RECORD_ARTIFACT} artifact ({exc});"
                             " runs log it with grmodel.reproduce.log_run_record") from None
    record = RunRecord.from_dict(raw, f"{source} {RECORD_ARTIFACT}")
    tag = run.data.tags.get(TAG_DATA_VERSION)
    if tag != record.data_version:
        raise ReproduceError(f"{source}: tag {TAG_DATA_VERSION}={tag!r} disagrees with its"
                             f" {RECORD_ARTIFACT} ({record.data_version})")
    return record


def is_record_file(run: str) -> bool:
    """Whether ``run`` names a ``run_record.json`` file (else it is an MLflow run id)."""
    return Path(run).suffix == ".json" and Path(run).is_file()


def load_record(run: str, tracking_uri: str | None = None) -> RunRecord:
    """A run record from a ``run_record.json`` file path, else from the MLflow run ``run``."""
    path = Path(run)
    if is_record_file(run):
        try:
            return RunRecord.from_dict(json.loads(path.read_text()), str(path))
        except json.JSONDecodeError as exc:
            raise ReproduceError(f"{path}: not valid JSON ({exc})") from None
    return record_from_mlflow(run, tracking_uri)

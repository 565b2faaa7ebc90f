"""The drift stage against a real MLflow registry (sqlite): no champion yet, then a champion
whose logged model carries the reference of its training rows; warn and stop policies."""

from __future__ import annotations

import json

import pytest

from grmodel import registry, tracking
from grmodel.cli import error_line
from grmodel.pipeline.console import describe
from grmodel.pipeline.live import StageTracking
from grmodel.pipeline.stages.drift import drift_check
from grmodel.pipeline.stages.record import StageError, StageRecord
from grmodel.validation.drift import DriftBounds, DriftFailed

NAME = "drift-gr"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-mlflow")
    return StageTracking(f"sqlite:///{root / 'mlflow.db'}", "grmodel", str(root / "artifacts"))


@pytest.fixture(scope="module")
def champion(store, tmp_path_factory, days_dataset):
    """A one-epoch model trained on day set 0, logged with its data and made champion."""
    from grmodel.config import RunConfig
    from grmodel.training.loop import train_model

    root = tmp_path_factory.mktemp("drift-champion")
    data = days_dataset(root / "processed", seed=0)
    config = RunConfig().with_overrides([
        f"data.processed_dir={data}", "model_name=vr", "train.epochs=1", "train.progress=false",
        "train.num_threads=1", "train.batch_size=256", "train.on_collapse=warn"])
    result = train_model(config, root / "model")
    with (tracking.pipeline_run(store.uri, pipeline_run_id="drift-champion",
                                data_version="days0", artifact_root=store.artifact_root) as parent,
          tracking.stage_run(store.uri, parent, "train_gr") as run_id):
        registry.log_model(result.model_dir, data, name="gr")
    version = registry.register_model(NAME, run_id, tracking_uri=store.uri)
    tracking.connect(store.uri).set_registered_model_alias(NAME, "champion", version.version)
    return version.version


def test_first_run_has_no_reference_and_passes(tmp_path, store, days_dataset):
    data = days_dataset(tmp_path / "d", seed=1, label_scale=1.5)
    result = drift_check(data, tmp_path / "out", model_name="never-registered", policy="stop",
                         tracking=store)
    assert result["verdict"] == "no reference"
    record = StageRecord.read(tmp_path / "out")
    assert record.stage == "check_drift" and record.metrics["drift_reference"] == 0.0
    assert record.params["drift"]["reference"] == {
        "none": "no registered model 'never-registered' yet"}
    assert describe(record.__dict__) == "no reference (no registered model 'never-registered' yet)"
    report = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert report["verdict"] == "no reference" and report["checks"] == []


def test_same_data_passes_against_the_champion(tmp_path, store, champion, days_dataset):
    data = days_dataset(tmp_path / "d", seed=1)
    result = drift_check(data, tmp_path / "out", model_name=NAME, policy="stop", tracking=store)
    assert result["verdict"] == "no drift", result["summary"]
    record = StageRecord.read(tmp_path / "out")
    assert record.params["drift"]["reference"]["version"] == str(champion)
    assert record.metrics["drift_detected"] == 0.0 and record.metrics["checks_failed"] == 0
    assert describe(record.__dict__).startswith(
        f"no drift vs champion version {champion} of {NAME}, ")


def test_warn_flags_a_label_shift_and_goes_on(tmp_path, store, champion, days_dataset, caplog):
    data = days_dataset(tmp_path / "d", seed=1, label_scale=1.5)
    result = drift_check(data, tmp_path / "out", model_name=NAME, policy="warn", tracking=store)
    assert result["verdict"] == "drift" and result["drifted"] == {"test.parquet": ["label"]}
    record = StageRecord.read(tmp_path / "out")
    assert record.metrics["drift_detected"] == 1.0 and record.metrics["drift_columns"] == 1.0
    assert record.metrics["drift.test.label.mean_ratio"] == pytest.approx(1.5, rel=0.15)
    assert describe(record.__dict__) == (
        f"DRIFT (warn) vs champion version {champion} of {NAME}: test label")
    assert "test.parquet: label" in caplog.text
    # The stage's own MLflow run holds the verdict and the report.
    client = tracking.connect(store.uri)
    run = client.get_run(record.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.params["drift.verdict"] == "drift"
    assert run.data.metrics["drift_detected"] == 1.0
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"drift.html", "drift.json"}


def test_stop_fails_with_one_line_and_keeps_the_report(tmp_path, store, champion, days_dataset):
    data = days_dataset(tmp_path / "d", seed=1, label_scale=1.5)
    with pytest.raises(DriftFailed) as caught:
        drift_check(data, tmp_path / "out", model_name=NAME, policy="stop", tracking=store)
    line, status = error_line("pipeline run", caught.value)
    assert status == 1 and "\n" not in line
    assert f"drift against champion version {champion} of {NAME} in test.parquet: label" in line
    assert "(rule: KL divergence from the reference <= 0.05" in line
    report = json.loads((tmp_path / "out" / "drift.json").read_text())
    assert report["verdict"] == "drift"
    record = StageRecord.read(tmp_path / "out")
    run = tracking.connect(store.uri).get_run(record.mlflow_run_id)
    assert run.info.status == "FAILED"


def test_thresholds_come_from_the_run(tmp_path, store, champion, days_dataset):
    """A looser KL floor and quantile tolerance than a x1.5 label: no drift."""
    data = days_dataset(tmp_path / "d", seed=1, label_scale=1.5)
    loose = DriftBounds(max_kl=1.0, quantile_tolerance=2.0)
    result = drift_check(data, tmp_path / "out", model_name=NAME, bounds=loose, policy="stop",
                         tracking=store)
    assert result["verdict"] == "no drift"
    assert StageRecord.read(tmp_path / "out").params["drift"]["bounds"]["max_kl"] == 1.0


def test_bad_policy_and_unreachable_registry_are_named(tmp_path, days_dataset):
    data = days_dataset(tmp_path / "d", seed=1)
    with pytest.raises(StageError, match="drift_policy 'halt': expected one of"):
        drift_check(data, tmp_path / "out", model_name=NAME, policy="halt")
    gone = StageTracking(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}")
    with pytest.raises(StageError, match=r"is unreachable .*\(rule: the drift check reads"):
        drift_check(data, tmp_path / "out2", model_name=NAME, tracking=gone)
    assert not (tmp_path / "out").exists()

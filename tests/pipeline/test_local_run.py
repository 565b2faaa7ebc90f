"""The whole pipeline through kfp.local on tiny generated data: every component runs as a
kfp.local task (a subprocess, as on Kubeflow, minus images and resources), and a failing
validation stops the run before anything is built or registered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from grmodel.pipeline.local import PipelineFailed, local_tracking, run_local
from grmodel.pipeline.params import PipelineParams


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # The component subprocesses inherit it: two cores, several processes.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _params(workdir: Path, overrides: list[str], **values) -> PipelineParams:
    return PipelineParams().with_values({
        "data_source": "generate", "preset": "tiny", "data_seed": 3, "overrides": overrides,
        "require_beats_baselines": [], "registered_model_name": "local-gr",
        **local_tracking(workdir), **values})


@pytest.fixture(scope="module")
def finished(tmp_path_factory, pipeline_overrides):
    work = tmp_path_factory.mktemp("local-run")
    return run_local(_params(work, pipeline_overrides), work)


def test_every_task_leaves_its_outputs(finished):
    run = finished.run_dir
    fetched = run / "fetch-data" / "raw"
    assert (fetched / "raw" / "small_matrix.csv").is_file()
    for task in ("validate", "validate-2"):
        assert (run / task / "report" / "validation.json").is_file()
        assert json.loads((run / task / "report" / "validation.json").read_text())["success"]
    assert (run / "ingest" / "processed" / "train.parquet").is_file()
    assert (run / "build-vocab" / "vocabulary" / "vocabulary.json").is_file()
    assert (run / "encode-labels" / "tokens" / "tokens.parquet").is_file()
    assert (run / "train-gr" / "model" / "seed2024" / "model.pt").is_file()
    baselines = sorted(run.glob("for-loop-*/train-baseline/model/seed2024/model.pt"))
    assert len(baselines) == 2
    assert (finished.evaluation_dir / "report.md").is_file()
    assert (finished.evaluation_dir / "figures").is_dir()


def test_metrics_put_gr_above_the_median(finished):
    metrics = json.loads((finished.evaluation_dir / "metrics.json").read_text())
    assert set(metrics) >= {"gr", "cread", "tpm", "train_median", "oracle_median"}
    assert metrics["gr"]["xauc"] > 0.6 > metrics["train_median"]["xauc"]


def test_mlflow_holds_the_run_and_the_registry_its_champion(finished):
    from mlflow import MlflowClient

    from grmodel import registry

    uri = finished.params.mlflow_tracking_uri
    decision = finished.decision
    assert decision["verdict"] == "promoted" and decision["challenger_version"] == "1"
    assert registry.alias_version("local-gr", registry.CHAMPION, uri) == "1"
    assert registry.alias_version("local-gr", registry.CHALLENGER, uri) == "1"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("grmodel")
    parents = client.search_runs([experiment.experiment_id], "tags.run_kind = 'pipeline'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.tags["data_version"] == decision["data_version"]
    assert parent.data.tags["pipeline_status"] == "SUCCEEDED"
    assert "train_gr.gr.train.lr" in parent.data.params
    stages = client.search_runs([experiment.experiment_id],
                                f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    names = sorted(r.data.tags["stage"] for r in stages)
    assert names == sorted(["fetch_data", "validate_raw", "ingest", "validate_processed",
                            "build_vocab", "encode_labels", "train_gr", "train_cread", "train_tpm",
                            "evaluate", "register"])
    by_name = {r.data.tags["stage"]: r for r in stages}
    assert by_name["evaluate"].data.metrics["test.gr.mae"] == pytest.approx(
        json.loads((finished.evaluation_dir / "metrics.json").read_text())["gr"]["mae"])
    curve = client.get_metric_history(by_name["train_gr"].info.run_id, "seed2024.valid_mae")
    assert len(curve) == 3  # one point per epoch
    artifacts = {a.path for a in client.list_artifacts(by_name["evaluate"].info.run_id)}
    assert {"report.md", "report.html", "figures"} <= artifacts
    assert {a.path for a in client.list_artifacts(by_name["build_vocab"].info.run_id)} == {"vocabulary.json"}


def test_the_parent_run_records_what_grmodel_reproduce_needs(finished):
    from mlflow import MlflowClient

    from grmodel.reproduce import record_from_mlflow

    uri = finished.params.mlflow_tracking_uri
    client = MlflowClient(uri)
    parent = client.search_runs([client.get_experiment_by_name("grmodel").experiment_id],
                                "tags.run_kind = 'pipeline'")[0]
    record = record_from_mlflow(parent.info.run_id, uri)
    assert record.data_version == finished.decision["data_version"]
    assert sorted(record.models) == ["cread", "gr", "tpm"]
    assert record.models["gr"]["train"]["seed"] == 2024
    metrics = json.loads((finished.evaluation_dir / "metrics.json").read_text())
    assert record.metrics["gr"]["mae"] == pytest.approx(metrics["gr"]["mae"])
    assert "oracle (median)" in record.metrics


def test_a_failing_validation_stops_the_run(tmp_path, pipeline_overrides):
    """Broken raw data: the raw gate fails; no vocabulary, no model, nothing registered."""
    from mlflow import MlflowClient

    from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec

    raw = tmp_path / "raw"
    generate_kuairec(raw, SynthConfig.preset("tiny", seed=3))
    matrix = raw / "small_matrix.csv"
    lines = matrix.read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("watch_ratio")
    broken = [lines[0]] + [",".join("-5" if i == column else v for i, v in enumerate(line.split(",")))
                           for line in lines[1:]]
    matrix.write_text("\n".join(broken) + "\n")
    params = _params(tmp_path, pipeline_overrides, data_source="path", data_repo=str(raw))
    with pytest.raises(PipelineFailed, match="validate"):
        run_local(params, tmp_path)
    run = next((tmp_path / "kfp").glob("grmodel-gr-*"))
    report = json.loads((run / "validate" / "report" / "validation.json").read_text())
    assert not report["success"]
    assert not (run / "ingest").exists() and not (run / "build-vocab").exists()
    assert not list(run.glob("**/model.pt"))
    client = MlflowClient(params.mlflow_tracking_uri)
    assert client.search_registered_models() == []
    parents = client.search_runs([client.get_experiment_by_name("grmodel").experiment_id])
    assert [p.info.status for p in parents] == ["FAILED"]
    shutil.rmtree(raw)

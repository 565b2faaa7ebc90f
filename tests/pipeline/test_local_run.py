"""The whole pipeline through kfp.local on tiny generated data: every component runs as a
kfp.local task (a subprocess, as on Kubeflow, minus images and resources). Minutes of CPU, so
marked long (`pytest -m long`); tests/pipeline/test_local.py keeps one short kfp.local run (a
failing validation) in the default suite."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from tiny_runs import local_params

from grmodel.pipeline.local import (
    PipelineFailed,
    run_local,
    summary,
)

pytestmark = pytest.mark.long


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # The component subprocesses inherit it: two cores, several processes.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def watched(tmp_path_factory, pipeline_overrides):
    """The run and what its terminal (not a TTY here) showed."""
    work = tmp_path_factory.mktemp("local-run")
    terminal = io.StringIO()
    run = run_local(local_params(work, pipeline_overrides), work, terminal=terminal)
    return run, terminal.getvalue() + summary(run) + "\n"


@pytest.fixture(scope="module")
def finished(watched):
    return watched[0]


TASKS = ["fetch-data", "validate-raw", "ingest", "validate-processed", "check-drift", "build-vocab",
         "encode-labels", "train-gr", "train-baseline", "train-baseline", "evaluate", "register",
         "close-tracking"]


def test_the_terminal_shows_one_line_per_stage_start_and_end(watched):
    run, shown = watched
    lines = shown.splitlines()
    assert len(lines) <= 80, shown
    started = sorted(line.split("▸ ")[1] for line in lines if "  ▸ " in line)
    ended = sorted(line.split("✓ ")[1].split()[0] for line in lines if "  ✓ " in line)
    assert started == ended == sorted(TASKS)
    assert re.search(r"✓ validate-raw +\d+\.\d s  (\d+)/\1 checks passed", shown)
    assert re.search(r"✓ ingest .* [\d,]+ train, [\d,]+ valid, [\d,]+ test rows", shown)
    assert re.search(r"✓ check-drift .* no reference \(no registered model 'local-gr' yet\)",
                     shown)
    assert re.search(r"✓ train-gr .* gr: seed2024 best epoch \d, valid MAE \d", shown)
    assert re.search(r"✓ evaluate .* test MAE gr \d", shown)
    assert "registry:  local-gr version 1 (alias challenger): promoted" in shown
    for chatter in ("executor_input", "Skipping registering", "RuntimeWarning", "KFP Executor"):
        assert chatter not in shown
    log = (run.folder / "log.txt").read_text()
    assert "Got executor_input" in log and "grmodel-progress" in log and "✓ train-gr" in log


def test_latest_holds_stable_paths_into_the_run(finished):
    from grmodel.checkpoint import load_checkpoint

    latest = finished.folder.parent / "latest"
    assert latest.resolve() == finished.folder
    assert (latest / "processed" / "manifest.json").is_file()
    assert (latest / "raw" / "small_matrix.csv").is_file()
    assert (latest / "report" / "report.md").is_file() and (latest / "report" / "report.html").is_file()
    assert (latest / "mlflow.db").resolve() == (finished.folder.parent / "mlflow.db").resolve()
    assert sorted(p.name for p in (latest / "models").iterdir()) == ["cread", "gr", "tpm"]
    for row in ("gr", "cread", "tpm"):
        assert load_checkpoint(latest / "models" / row)[1]["model_name"] == row
    assert (latest / "kfp").resolve() == finished.run_dir  # the artifact tree stays where it is
    assert not (latest / "models" / "gr").resolve().is_relative_to(finished.folder)


def test_every_task_leaves_its_outputs(finished):
    run = finished.run_dir
    fetched = run / "fetch-data" / "raw"
    assert (fetched / "raw" / "small_matrix.csv").is_file()
    for task in ("validate-raw", "validate-processed"):
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
                            "check_drift", "build_vocab", "encode_labels", "train_gr",
                            "train_cread", "train_tpm", "evaluate", "register"])
    by_name = {r.data.tags["stage"]: r for r in stages}
    # Every stage, the baselines trained in the ParallelFor included, names the data version:
    # in MLflow and on its output artifacts (kfp.local once handed the loop body the loop item).
    assert {r.data.tags["data_version"] for r in stages} == {decision["data_version"]}
    outputs = [json.loads(p.read_text()) for p in finished.run_dir.rglob("executor_output.json")]
    versions = {a["metadata"]["data_version"] for o in outputs
                for art in o.get("artifacts", {}).values() for a in art["artifacts"]
                if "data_version" in a.get("metadata", {})}
    assert versions == {decision["data_version"]}, versions
    assert by_name["evaluate"].data.metrics["test.gr.mae"] == pytest.approx(
        json.loads((finished.evaluation_dir / "metrics.json").read_text())["gr"]["mae"])
    curve = client.get_metric_history(by_name["train_gr"].info.run_id, "seed2024.valid_mae")
    assert len(curve) == 3  # one point per epoch
    artifacts = {a.path for a in client.list_artifacts(by_name["evaluate"].info.run_id)}
    assert {"report.md", "report.html", "figures"} <= artifacts
    assert {a.path for a in client.list_artifacts(by_name["build_vocab"].info.run_id)} == {"vocabulary.json"}


def _parent_and_stages(finished):
    from mlflow import MlflowClient

    client = MlflowClient(finished.params.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("grmodel")
    parent = client.search_runs([experiment.experiment_id], "tags.run_kind = 'pipeline'")[0]
    stages = client.search_runs([experiment.experiment_id],
                                f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return client, parent, {r.data.tags["stage"]: r for r in stages}


def test_stages_log_their_runs_while_they_run(finished):
    """Each stage's run is the one it opened itself: it lasts as long as the stage did (not the
    milliseconds of a run written afterwards), and its curves are timed epoch by epoch."""
    from grmodel.pipeline.stages.record import StageRecord

    client, parent, by_name = _parent_and_stages(finished)
    assert {r.data.tags["tracked"] for name, r in by_name.items() if name != "register"} == {"live"}
    record = StageRecord.read(finished.run_dir / "train-gr" / "model")
    train = by_name["train_gr"]
    assert train.info.run_id == record.mlflow_run_id
    seconds = (train.info.end_time - train.info.start_time) / 1000
    assert seconds >= 0.9 * (record.ended - record.started) and seconds > 1.0
    assert train.info.start_time <= record.started * 1000 + 1000
    curve = client.get_metric_history(train.info.run_id, "seed2024.valid_mae")
    times = sorted(m.timestamp for m in curve)
    assert len(set(times)) == 3 and train.info.start_time < times[0] < times[-1] <= train.info.end_time
    # The parent spans the run: from the first stage's start to the last step.
    assert parent.info.start_time <= by_name["fetch_data"].info.start_time
    assert parent.info.end_time >= by_name["register"].info.end_time


def test_the_parent_run_is_named_and_carries_every_rows_results(finished):
    import re

    client, parent, by_name = _parent_and_stages(finished)
    version = finished.decision["data_version"]
    assert re.fullmatch(rf"grmodel-gr-\d{{8}}T\d{{6}}Z-{version[:8]}", parent.info.run_name)
    metrics = json.loads((finished.evaluation_dir / "metrics.json").read_text())
    for row in ("gr", "cread", "tpm", "train_median", "oracle_median"):
        assert parent.data.metrics[f"test.{row}.mae"] == pytest.approx(metrics[row]["mae"]), row
        assert parent.data.metrics[f"test.{row}.xauc"] == pytest.approx(metrics[row]["xauc"]), row
    assert parent.data.tags["gate.verdict"] == finished.decision["verdict"] == "promoted"
    assert parent.data.tags["drift.verdict"] == "no reference"  # the first run: no champion
    assert parent.data.metrics["drift.detected"] == 0.0
    assert parent.data.metrics["gate.promoted"] == 1.0
    assert parent.data.tags["report"].endswith("/report/report.html")
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/figures",
            "report/decision.md"} <= report


def test_the_baselines_are_logged_as_models(finished):
    import mlflow
    import pandas as pd

    client, _, by_name = _parent_and_stages(finished)
    mlflow.set_tracking_uri(finished.params.mlflow_tracking_uri)  # models:/ URIs resolve there
    register = by_name["register"].info.run_id
    logged = client.search_logged_models([by_name["register"].info.experiment_id],
                                         f"source_run_id = '{register}'")
    assert sorted(m.name for m in logged) == ["cread", "gr", "tpm"]
    test = pd.read_parquet(finished.run_dir / "ingest" / "processed" / "test.parquet")
    for model in logged:
        loaded = mlflow.pyfunc.load_model(model.model_uri)
        columns = loaded.metadata.get_input_schema().input_names()
        assert loaded.predict(test[columns].head(4)).shape == (4,), model.name


def test_the_report_page_kubeflow_shows_renders_in_chromium(finished, browser_render, tmp_path):
    """The evaluate step's report.html at 1280 px: its tables (not Markdown in <pre>), every
    figure loaded and inside the page, no sideways scrolling. The screenshot is kept under
    runs/ for people to look at."""
    report = json.loads((finished.evaluation_dir / "report.json").read_text())
    measured = browser_render(finished.evaluation_dir / "report.html", tmp_path)
    assert measured["scrollWidth"] <= measured["viewport"] == 1280
    assert measured["pre_tables"] == 0
    assert measured["tables"][0]["rows"] == len(report["summary"])  # the results
    assert len(measured["images"]) == len(report["figures"]) >= 4
    assert all(i["loaded"] and i["right"] <= 1280 for i in measured["images"])
    assert {"Provenance", "Results (ours, test split)", "Runs", "Configurations", "Figures",
            "The paper's numbers, for reference"} <= set(measured["headings"])
    page = (finished.evaluation_dir / "report.html").read_text()
    assert finished.decision["data_version"] in page
    kept = Path(__file__).resolve().parents[2] / "runs" / "report-screenshot.png"
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(measured["screenshot"], kept)


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


def test_commands_given_kfp_artifact_folders_find_what_is_inside(finished, capsys):
    from grmodel.cli import main

    run = finished.run_dir
    assert main(["evaluate", "--data", str(run / "ingest" / "processed"),
                 "--model", f"gr={run / 'train-gr' / 'model'}"]) == 0
    assert "| gr |" in capsys.readouterr().out


def test_drift_policy_stop_ends_the_run_before_training(finished, tmp_path, pipeline_overrides):
    """The same generated world with every play x1.4 (mean watch time +40%; x1.5 breaks the
    raw suite's watch-ratio plausibility bound on this seed), against the champion the
    finished run registered: the drift check names the label and, under drift_policy=stop,
    fails its task; nothing is trained or registered. (The finished run's MLflow database is
    copied: its own tests keep seeing one pipeline run.)"""
    from mlflow import MlflowClient

    from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec

    raw = tmp_path / "raw"
    generate_kuairec(raw, SynthConfig.preset("tiny", seed=3))  # the finished run's data
    for name in ("big_matrix.csv", "small_matrix.csv"):
        matrix = pd.read_csv(raw / name)
        matrix["play_duration"] = (matrix["play_duration"] * 1.4).round().astype("int64")
        matrix["watch_ratio"] = matrix["play_duration"] / matrix["video_duration"]
        matrix.to_csv(raw / name, index=False)
    database = finished.params.mlflow_tracking_uri.removeprefix("sqlite:///")
    shutil.copyfile(database, tmp_path / "mlflow.db")
    params = local_params(tmp_path, pipeline_overrides, data_source="path", data_repo=str(raw),
                     snapshot_remote=str(tmp_path / "dvc-remote"), drift_policy="stop")
    terminal = io.StringIO()
    with pytest.raises(PipelineFailed) as caught:
        run_local(params, tmp_path, terminal=terminal)
    message = str(caught.value)
    assert "check-drift: DriftFailed: drift against champion version 1 of local-gr in" in message
    assert "label" in message and "drift_policy=stop" in message
    assert re.search(r"✗ check-drift .* failed: DriftFailed: drift against", terminal.getvalue())
    run = next((tmp_path / "kfp").glob("grmodel-gr-*"))
    report = json.loads((run / "check-drift" / "report" / "drift.json").read_text())
    assert report["verdict"] == "drift" and "label" in report["drifted"]["test.parquet"]
    label = next(c for c in report["comparisons"]
                 if (c["table"], c["column"]) == ("train.parquet", "label"))
    assert label["new_mean"] / label["reference_mean"] == pytest.approx(1.4, rel=0.05)
    assert not (run / "build-vocab").exists() and not list(run.glob("**/model.pt"))
    client = MlflowClient(params.mlflow_tracking_uri)
    assert [str(v.version) for v in client.search_model_versions("name = 'local-gr'")] == ["1"]

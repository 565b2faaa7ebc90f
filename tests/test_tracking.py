"""Parent and nested runs, params from configs, per-epoch curves, final metrics, artifacts and
lineage tags, on a sqlite tracking store (the HTTP server is exercised in test_registry.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from grmodel import __version__, tracking
from grmodel.config import RunConfig
from grmodel.registry import PromotionPolicy
from grmodel.training.records import TrainResult

HISTORY = [
    {"epoch": 0, "step": 10, "train_loss": 3.0, "valid_mae": 6.0, "valid_xauc": 0.60,
     "samples_per_second": 900.0, "p_truth": 1.0},
    {"epoch": 1, "step": 20, "train_loss": 2.0, "valid_mae": 5.5, "valid_xauc": 0.66,
     "samples_per_second": 950.0, "p_truth": 0.5},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    return f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"


@pytest.fixture(scope="module")
def pipeline(store):
    uri, artifacts = store
    config = RunConfig().with_overrides(["train.lr=1e-3", "model.n_layers=2"])
    parent = tracking.start_pipeline_run(
        uri, pipeline_run_id="kfp-run-42", data_version="d41d8cd9.dir", artifact_root=artifacts,
        configs={"gr": config, "policy": PromotionPolicy()},
    )
    return uri, parent, config


def test_parent_run_has_every_config_and_the_lineage_tags(pipeline):
    uri, parent, config = pipeline
    run = tracking.connect(uri).get_run(parent)
    params, tags = run.data.params, run.data.tags
    assert params["gr.train.lr"] == "0.001" and params["gr.model.n_layers"] == "2"
    assert params["gr.model.max_decode_len"] == "None"
    assert params["policy.require_beats_baselines"] == '["cread", "tpm"]'
    assert len([k for k in params if k.startswith("gr.")]) == len(tracking.flatten_config(config))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(tracking.__file__).parent,
                          capture_output=True, text=True).stdout.strip() or "unknown"
    assert tags["git_commit"].removesuffix("-dirty") == head
    assert tags["mlflow.source.git.commit"] == head
    assert tags["grmodel_version"] == __version__
    assert tags["data_version"] == "d41d8cd9.dir" and tags["pipeline_run_id"] == "kfp-run-42"
    assert run.info.status == "RUNNING"
    # Experiments get an explicit artifact location, never ./mlruns.
    assert run.info.artifact_uri.startswith("file://") and "/artifacts/grmodel/" in run.info.artifact_uri


def test_a_retried_pipeline_run_resumes_its_parent(pipeline, store):
    uri, parent, _ = pipeline
    again = tracking.start_pipeline_run(uri, pipeline_run_id="kfp-run-42", data_version="d41d8cd9.dir",
                                        artifact_root=store[1])
    assert again == parent


def test_stage_runs_are_nested_and_record_curves_results_and_artifacts(pipeline, tmp_path):
    uri, parent, config = pipeline
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    label_state = {"vocab": {"kind": "dynamic_quantile", "boundaries": [0.0, 1.5, 9.0]}}
    (model_dir / "checkpoint.json").write_text(json.dumps({"model_name": "gr", "label_state": label_state}))
    report = tmp_path / "report.md"
    report.write_text("| model | MAE |\n")
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "calibration.png").write_bytes(b"\x89PNG\r\n")
    result = TrainResult(model_dir, 1, {"mae": 5.5, "xauc": 0.66}, HISTORY, 12.0, 925.0)
    results = {"gr": {"mae": 5.4, "xauc": 0.67, "xauc_tie_aware": 0.66, "oracle": {"mae": 5.0}},
               "oracle (median)": {"mae": 4.9, "xauc": 0.71, "xauc_tie_aware": 0.70}}

    with tracking.stage_run(uri, parent, "train_gr", configs={"gr": config}) as train_run:
        tracking.log_training(result)
    with tracking.stage_run(uri, parent, "evaluate") as eval_run:
        tracking.log_results(results)
        tracking.log_results(results, run_id=parent)  # the headline numbers on the parent too
        tracking.log_artifacts([report, figures], "evaluation")

    client = tracking.connect(uri)
    train = client.get_run(train_run)
    assert train.data.tags["mlflow.parentRunId"] == parent and train.data.tags["stage"] == "train_gr"
    assert train.data.tags["pipeline_run_id"] == "kfp-run-42" and train.info.status == "FINISHED"
    assert train.data.params["gr.train.lr"] == "0.001"
    curve = client.get_metric_history(train_run, "valid_mae")
    assert [(m.step, m.value) for m in curve] == [(0, 6.0), (1, 5.5)]
    assert train.data.metrics["best_valid_mae"] == 5.5 and train.data.metrics["best_epoch"] == 1
    vocab = client.download_artifacts(train_run, "vocabulary/gr.json", str(tmp_path))
    assert json.loads(Path(vocab).read_text()) == label_state

    metrics = client.get_run(eval_run).data.metrics
    assert metrics["test.gr.mae"] == 5.4 and metrics["test.gr.oracle_mae"] == 5.0
    assert metrics["test.oracle_median.xauc"] == 0.71
    assert client.get_run(parent).data.metrics["test.gr.xauc"] == 0.67
    logged = {a.path for a in client.list_artifacts(eval_run, "evaluation")}
    assert logged == {"evaluation/report.md", "evaluation/figures"}


def test_a_failing_stage_is_marked_failed(pipeline):
    uri, parent, _ = pipeline
    with pytest.raises(ValueError, match="bad rows"), tracking.stage_run(uri, parent, "validate") as run:
        raise ValueError("bad rows")
    assert tracking.connect(uri).get_run(run).info.status == "FAILED"


def test_pipeline_run_context_finishes_or_fails_the_parent(store):
    uri, artifacts = store
    with tracking.pipeline_run(uri, pipeline_run_id="ok", data_version="v", artifact_root=artifacts) as ok:
        pass
    with pytest.raises(KeyError), tracking.pipeline_run(
        uri, pipeline_run_id="broken", data_version="v", artifact_root=artifacts
    ) as broken:
        raise KeyError("x")
    client = tracking.connect(uri)
    assert client.get_run(ok).info.status == "FINISHED"
    assert client.get_run(broken).info.status == "FAILED"


def test_a_database_store_needs_an_artifact_root(store):
    with pytest.raises(ValueError, match="artifact_root is required"):
        tracking.ensure_experiment(store[0], "no-root")


def test_logging_outside_a_run_is_refused():
    with pytest.raises(RuntimeError, match="no active MLflow run"):
        tracking.log_results({"gr": {"mae": 1.0}})


def test_flatten_config_names_every_leaf():
    flat = tracking.flatten_config({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": "x" * 7000})
    assert flat["a.b"] == "1" and flat["a.c"] == "[1, 2]" and flat["d"] == "None"
    assert len(flat["e"]) == 6000


def test_the_commit_says_whether_the_tree_had_uncommitted_changes(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    head = git("rev-parse", "HEAD")
    (tmp_path / "notes.txt").write_text("untracked files are not the code that ran\n")
    assert tracking.git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert tracking.git_commit(tmp_path) == f"{head}-dirty"
    assert tracking.commit_tags(f"{head}-dirty") == {"git_commit": f"{head}-dirty",
                                                    "mlflow.source.git.commit": head}

"""Reproducing recorded runs: two data versions in a temporary git + DVC repository with a
local remote, a run on each, then both runs re-run from their records."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
from pathlib import Path

import pytest
from dvc.repo import Repo

from grmodel import versioning
from grmodel.atomic import through_json
from grmodel.cli.reproduce import register
from grmodel.config import EvalConfig, RunConfig
from grmodel.data.kuairec.ingest import IngestConfig
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.data.windows import Window
from grmodel.datasource import resolve_logs, resolve_path
from grmodel.reproduce import (
    ReproduceError,
    Reproduction,
    RunRecord,
    compare_metrics,
    format_report,
    load_record,
    log_run_record,
    record_run,
    reproduce,
    train_and_evaluate,
)

# A tiny GR model and a few optimiser steps: seconds on one CPU thread.
TINY_GR = ["model.emb_dim=16", "model.encoder_hidden=32", "model.d_model=16", "model.n_heads=2",
           "model.ffn_dim=32", "model.n_layers=1", "model.dropout=0.0", "train.batch_size=256",
           "train.lr=2e-3", "train.epochs=1", "train.max_steps=6", "train.progress=false",
           "train.num_threads=1", "train.device=cpu",
           "train.on_collapse=warn"]  # six steps teach nothing: keep the model, marked


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit_data_version(repo: Path, seed: int) -> tuple[str, str]:
    """New generated data (tiny, ``seed``) -> `grmodel data snapshot` -> git commit."""
    generate_kuairec(repo / "data", SynthConfig.preset("tiny", seed=seed))
    version = versioning.snapshot(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"data: seed {seed}")
    return version, git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "test")
    with Repo.init(str(root)) as dvc_repo, dvc_repo.config.edit("repo") as conf:
        conf["remote"]["local"] = {"url": str(tmp_path / "remote")}  # dvc remote add -d
        conf["core"]["remote"] = "local"
    return root


def test_checkout_of_the_first_version_reproduces_the_first_run(repo, tmp_path, capsys):
    from mlflow import MlflowClient

    models = {"gr": RunConfig().with_overrides(TINY_GR)}
    v1, rev1 = commit_data_version(repo, seed=1)
    run1 = record_run(repo, tmp_path / "run1", models, ingest={"seed": 1})
    v2, rev2 = commit_data_version(repo, seed=2)
    run2 = record_run(repo, tmp_path / "run2", models, ingest={"seed": 1})
    assert (run1.data_version, run1.data_git_rev) == (v1, rev1)
    assert (run2.data_version, run2.data_git_rev) == (v2, rev2)
    assert run1.metrics["gr"]["mae"] != run2.metrics["gr"]["mae"]

    # Run 1 as the tracking layer keeps it in MLflow.
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(mlflow_uri)
    experiment = client.create_experiment("runs", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    log_run_record(run1, run_id, mlflow_uri)
    client.set_terminated(run_id)
    assert load_record(run_id, mlflow_uri) == run1

    # Check out the first version (git + `grmodel data ensure`), then `grmodel reproduce RUN_ID`.
    git(repo, "checkout", "-q", rev1, "--", "data.dvc")
    assert versioning.ensure_data(repo) == "pulled"
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["reproduce", run_id, "--repo", str(repo),
                              "--workdir", str(tmp_path / "again1"), "--tracking-uri", mlflow_uri])
    assert args.handler(args) == 0
    report = capsys.readouterr().out
    assert f"data version {v1} (git {rev1[:12]}, read from the workspace)" in report
    assert "| gr/mae |" in report and "metrics match exactly" in report and "| NO" not in report

    # Run 2 from the first version's workspace: its data is read at its git commit (DVC API).
    again2 = reproduce(run2, repo, tmp_path / "again2")
    assert again2.data_source == "export" and again2.all_match
    assert again2.metrics == run2.metrics
    assert versioning.require_version(repo) == v1  # the workspace was left alone


def test_a_different_metric_is_reported():
    recorded = {"gr": {"mae": 1.5, "n": 10, "intervals": [{"mae": 0.25}, {"mae": math.nan}]},
                "oracle (median)": {"mae": 1.0}}
    same = json.loads(json.dumps(recorded))
    assert all(row.match for row in compare_metrics(recorded, same))
    changed = json.loads(json.dumps(recorded))
    changed["gr"]["intervals"][0]["mae"] = 0.25000000000000006
    del changed["oracle (median)"]
    rows = {row.name: row for row in compare_metrics(recorded, changed)}
    assert rows["gr/mae"].match and rows["gr/n"].match
    assert rows["gr/intervals"].differences == ["intervals[0].mae"]
    assert rows["oracle (median)/mae"].differences == ["mae"]
    record = RunRecord("a" * 32 + ".dir", None, {"seed": 1}, {}, recorded)
    report = format_report(Reproduction(record, changed, list(rows.values()), "export"))
    assert "| gr/intervals | [2 values] | [2 values] | NO: intervals[0].mae |" in report
    assert report.endswith("2 of 4 metrics differ: gr/intervals, oracle (median)/mae")


def test_run_record_files_are_checked(tmp_path):
    record = RunRecord("a" * 32 + ".dir", None, {"seed": 1}, {"gr": RunConfig().to_dict()},
                       {"gr": {"mae": 1.0}})
    path = tmp_path / "run_record.json"
    path.write_text(json.dumps(record.to_dict()))
    assert load_record(str(path)) == record
    path.write_text(json.dumps({"format": "grmodel.run_record/1", "data_version": "x"}))
    with pytest.raises(ReproduceError, match="missing key"):
        load_record(str(path))


@pytest.mark.parametrize("source", ["path", "logs"])
def test_a_path_or_logs_run_reproduces_from_its_record(source, tiny_raw, tiny_days, tmp_path):
    """A run on a directory (snapshotted into a DVC remote) or on a window of logs by day
    (recorded by its partitions' hashes) re-runs from its record alone, every metric equal."""
    models = {"gr": RunConfig().with_overrides(TINY_GR)}
    if source == "path":
        data = resolve_path(str(tiny_raw), tmp_path / "raw", str(tmp_path / "remote"))
        ingest = {"seed": 1}
    else:
        data = resolve_logs(str(tiny_days), Window.of("2020-09-10", 3), tmp_path / "raw")
        ingest = {"split": "forward", "as_of": "2020-09-10", "window_days": 3}
    options = through_json(dataclasses.asdict(IngestConfig(**ingest)))
    metrics = train_and_evaluate(tmp_path / "raw", tmp_path / "run", options, models, EvalConfig())
    record = RunRecord(data.data_version, None, options,
                       {name: through_json(cfg.to_dict()) for name, cfg in models.items()},
                       metrics, data=data.to_dict())
    again = reproduce(RunRecord.from_dict(json.loads(json.dumps(record.to_dict()))), tmp_path,
                      tmp_path / "again")
    assert again.all_match and again.metrics == metrics
    assert again.data_source.startswith("snapshot in" if source == "path" else "logs in")
    report = format_report(again)
    assert f"data version {data.data_version} ({data.describe()}" in report

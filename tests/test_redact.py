"""Credentials never leave the process: the redaction choke point, and flows run with a fake
secret in MLFLOW_TRACKING_URI and in a git origin, every output stream and file grepped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grmodel.redact import redact, strip_credentials

SECRET = "FAKESECRET42"


@pytest.mark.parametrize(("url", "shown", "sent"), [
    (f"http://user:{SECRET}@mlflow:5000/x", "http://***@mlflow:5000/x", "http://mlflow:5000/x"),
    (f"https://{SECRET}@github.com/o/r.git", "https://***@github.com/o/r.git",
     "https://github.com/o/r.git"),
    (f"https://s3/b/k?X-Amz-Signature={SECRET}&v=1", "https://s3/b/k?X-Amz-Signature=***&v=1",
     "https://s3/b/k?v=1"),
    (f"http://h/api?token={SECRET}", "http://h/api?token=***", "http://h/api"),
    ("ssh://git@host/r.git", "ssh://***@host/r.git", "ssh://git@host/r.git"),
    ("sqlite:///runs/mlflow.db", "sqlite:///runs/mlflow.db", "sqlite:///runs/mlflow.db"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git", "git@github.com:o/r.git"),
])
def test_urls_are_redacted_for_people_and_stripped_for_clusters(url, shown, sent):
    assert redact(f"failed: {url} (x)") == f"failed: {shown} (x)"
    assert strip_credentials(url) == sent


def _grmodel(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "grmodel.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _no_secret_under(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("args", [
    ["predict", "--model", "models:/m@champion", "--input", "in.parquet", "--output", "o.parquet"],
    ["-v", "predict", "--model", "models:/m@champion", "--input", "in.parquet", "--output", "o"],
    ["registry", "register", "m", "--run-id", "abc"],
    ["-v", "registry", "history", "m", "--tracking-uri", f"http://user:{SECRET}@127.0.0.1:9"],
])
def test_an_unreachable_credentialed_mlflow_leaks_nothing(tmp_path, args):
    uri = f"http://user:{SECRET}@127.0.0.1:9"
    (tmp_path / "in.parquet").write_bytes(b"")
    # No retries: the CLI's own default (one) only makes the test slower.
    done = _grmodel(args, tmp_path, MLFLOW_TRACKING_URI=uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    assert done.returncode == 3, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert ("Traceback" in done.stderr) == (args[0] == "-v")
    assert "http://***@127.0.0.1:9" in done.stderr.splitlines()[-1]
    _no_secret_under(tmp_path)


def test_logged_params_and_stage_records_hold_no_credentials(tmp_path, monkeypatch):
    """The fetch_data record (its repo URL becomes an MLflow param) and params logged through
    tracking: both redacted, on a real MLflow store."""
    from mlflow import MlflowClient

    from grmodel import tracking
    from grmodel.pipeline.stages.data import fetch_data
    from grmodel.pipeline.stages.record import StageError

    monkeypatch.chdir(tmp_path)
    # A data repository reachable only as a directory; its URL form carries a token.
    with pytest.raises(StageError) as failed:
        fetch_data(tmp_path / "fetched", source="dvc",
                          data_repo=f"https://tok:{SECRET}@127.0.0.1:9/data.git")
    assert SECRET not in str(failed.value) and "https://***@127.0.0.1:9/data.git" in str(failed.value)
    with pytest.raises(StageError, match="never a git option"):
        fetch_data(tmp_path / "fetched", source="dvc", data_repo="--upload-pack=touch x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "fetched").exists()

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record = {"data": {"repo": f"https://tok:{SECRET}@git.example.com/d.git", "source": "dvc"}}
    with tracking.pipeline_run(uri, pipeline_run_id="p1", data_version="v.dir",
                               artifact_root=str(tmp_path / "artifacts"), configs=record) as run_id:
        pass
    params = MlflowClient(uri).get_run(run_id).data.params
    assert params["data.repo"] == "https://***@git.example.com/d.git"
    _no_secret_under(tmp_path)
    assert json.dumps(params).count(SECRET) == 0

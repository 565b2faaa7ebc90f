"""track → register → gate → promote → load by alias → predict, against a real ``mlflow server``
on loopback (sqlite backend, artifacts proxied over HTTP) and against a sqlite file store."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import grmodel
from grmodel import registry, tracking
from grmodel.checkpoint import load_checkpoint
from grmodel.cli import registry as registry_commands
from grmodel.data.profile import read_profile
from grmodel.evaluate import TRAIN_MEDIAN, evaluate_models
from grmodel.features import read_split
from grmodel.predict import predict_frame
from grmodel.training.loop import train_model

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

NAME = "gr-watch-time"
# The tiny planted dataset beats its training median easily; "weak" stops after 3 steps.
# WEAK learns nothing in 3 steps: its predictions are near-constant, so the trainer marks it
# collapsed (kept: the tests' small GR trains with train.on_collapse=warn) and no gate passes it.
GOOD, WEAK = ["train.epochs=3", "train.patience=3"], ["train.epochs=1", "train.max_steps=3"]
# No champion yet and no baseline required: the first run is promoted by policy.
FIRST_POLICY = registry.PromotionPolicy(require_beats_baselines=())
POLICY = registry.PromotionPolicy(min_mae_rel_improvement=0.01, max_xauc_drop=0.01,
                                  require_beats_baselines=(TRAIN_MEDIAN,))


@pytest.fixture(scope="module")
def server_process(tmp_path_factory, processes):
    """Started first (``trained`` asks for it): its start-up overlaps the training and the
    file-store flow, which run before the HTTP flow."""
    proc, uri, log = processes.mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield proc, uri, log
    processes.stop(proc)


@pytest.fixture(scope="module")
def trained(server_process, planted_dataset, tmp_path_factory, gr_config):
    # server_process is requested only to start the server before this trains.
    root = tmp_path_factory.mktemp("registry-models")
    base = gr_config(planted_dataset)
    return {name: train_model(base.with_overrides(extra), root / name)
            for name, extra in (("good", GOOD), ("weak", WEAK))}


@pytest.fixture(scope="module")
def server_uri(server_process, processes):
    proc, uri, log = server_process
    processes.wait_http(proc, f"{uri}/health", log)
    return uri


def run_pipeline(uri, artifact_root, pipeline_run_id, result, data, policy):
    """One pipeline run as the Kubeflow pipeline does it: train stage logs the model, evaluate
    stage measures the baselines, register stage registers and gates."""
    with tracking.pipeline_run(uri, pipeline_run_id=pipeline_run_id, data_version="0123abcd.dir",
                               artifact_root=artifact_root, configs={"policy": policy}) as parent:
        with tracking.stage_run(uri, parent, "train_gr") as train_run:
            tracking.log_training(result)
            registry.log_model(result.model_dir, data)
        with tracking.stage_run(uri, parent, "evaluate"):
            baselines = evaluate_models(data, {})
            tracking.log_results(baselines)
        with tracking.stage_run(uri, parent, "register"):
            version = registry.register_model(NAME, train_run, tracking_uri=uri)
            decision = registry.gate(NAME, version.version, data, baselines=baselines,
                                     policy=policy, tracking_uri=uri)
    return {"run_id": train_run, "parent": parent, "version": str(version.version),
            "decision": decision, "baselines": baselines}


def _flow(uri, artifact_root, trained, data):
    runs = [
        run_pipeline(uri, artifact_root, "pipeline-a", trained["weak"], data, FIRST_POLICY),
        run_pipeline(uri, artifact_root, "pipeline-b", trained["good"], data, POLICY),
        run_pipeline(uri, artifact_root, "pipeline-c", trained["weak"], data, POLICY),
    ]
    return {"uri": uri, "runs": runs, "data": data, "trained": trained,
            "artifact_root": artifact_root}


@pytest.fixture(scope="module")
def http_flow(server_uri, trained, planted_dataset):
    return _flow(server_uri, None, trained, planted_dataset)


@pytest.fixture(scope="module")
def sqlite_flow(tmp_path_factory, trained, planted_dataset):
    root = tmp_path_factory.mktemp("mlflow-sqlite")
    return _flow(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", trained, planted_dataset)


@pytest.fixture(scope="module", params=["sqlite", "http"])
def flow(request):
    return request.getfixturevalue(f"{request.param}_flow")


def test_champion_moves_only_to_a_better_challenger(flow):
    a, b, c = (r["decision"] for r in flow["runs"])
    assert [r["version"] for r in flow["runs"]] == ["1", "2", "3"]
    # a: no champion yet and no baseline required, but the model collapsed → rejected.
    assert not a.promoted and a.champion_version is None and a.champion_after is None
    assert [(x["check"], x["passed"]) for x in a.checks] == [("not collapsed", False)]
    # b: informative and beats the training median → the first champion.
    assert b.promoted and b.champion_version is None
    assert {c_["check"] for c_ in b.checks} == {"not collapsed", f"mae < {TRAIN_MEDIAN}",
                                               f"xauc ~ {TRAIN_MEDIAN}"}
    # c: the weak model again is collapsed and worse than the champion → rejected, champion stays.
    assert not c.promoted and c.champion_version == "2" and c.champion_after == "2"
    assert not next(x for x in c.checks if x["check"] == "mae < champion")["passed"]
    assert not next(x for x in c.checks if x["check"] == "not collapsed")["passed"]
    assert c.metrics["champion"]["mae"] == pytest.approx(b.metrics["challenger"]["mae"])
    assert c.policy == POLICY.to_dict() and c.data_version == "0123abcd.dir"
    assert registry.alias_version(NAME, registry.CHAMPION, flow["uri"]) == "2"
    assert registry.alias_version(NAME, registry.CHALLENGER, flow["uri"]) == "3"


def test_history_says_which_version_was_champion_when_and_why(flow):
    decisions = registry.history(NAME, flow["uri"])
    assert [(d.challenger_version, d.verdict, d.champion_after) for d in decisions] == [
        ("1", "rejected", None), ("2", "promoted", "2"), ("3", "rejected", "2")]
    client = tracking.connect(flow["uri"])
    tags = client.get_model_version(NAME, "3").tags
    assert tags[registry.VERDICT_TAG] == "rejected"
    assert tags["pipeline_run_id"] == "pipeline-c" and tags["data_version"] == "0123abcd.dir"
    assert tags[registry.SOURCE_RUN_TAG] == flow["runs"][2]["run_id"]
    # The gate run holds the promotion log up to its decision.
    gate_run = registry.Decision.from_json(tags[registry.DECISION_TAG]).run_id
    log = tracking.connect(flow["uri"]).download_artifacts(gate_run, "promotion/promotion_log.json")
    assert [d["challenger_version"] for d in json.loads(Path(log).read_text())["decisions"]] == [
        "1", "2", "3"]


def test_registration_and_gate_are_idempotent(flow):
    uri, last = flow["uri"], flow["runs"][2]
    again = registry.register_model(NAME, last["run_id"], tracking_uri=uri)
    assert str(again.version) == last["version"]
    client = tracking.connect(uri)
    assert len(client.search_model_versions(f"name = '{NAME}' and run_id = '{last['run_id']}'")) == 1
    # The same inputs (test rows, policy, baselines, champion) give back the recorded decision.
    decision = registry.gate(NAME, again.version, flow["data"], baselines=last["baselines"],
                             policy=POLICY, tracking_uri=uri)
    assert decision.to_json() == last["decision"].to_json()
    assert registry.alias_version(NAME, registry.CHAMPION, uri) == "2"


def test_load_champion_by_alias_and_predict(flow):
    data, good = flow["data"], flow["trained"]["good"]
    test = read_split(data, "test")
    expected = predict_frame(load_checkpoint(good.model_dir)[0], test)
    import mlflow

    tracking.connect(flow["uri"])
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    features = test[pyfunc.metadata.get_input_schema().input_names()]
    np.testing.assert_allclose(pyfunc.predict(features, params={"batch_size": 64}), expected, rtol=1e-6)
    # The CLI path (`grmodel predict --model models:/NAME@champion`): URI → checkpoint dir.
    model, meta = load_checkpoint(registry.resolve_model_uri(f"models:/{NAME}@champion", flow["uri"]))
    assert meta["model_name"] == "gr"
    np.testing.assert_allclose(predict_frame(model, test, batch_size=100, progress=True), expected)


def test_logged_model_is_code_json_and_state_dict(flow, tmp_path):
    import mlflow

    tracking.connect(flow["uri"])
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/2", dst_path=str(tmp_path)))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))]
    assert {"data/checkpoint/model.pt", "data/checkpoint/config.json", "data/checkpoint/label_state.json",
            "data/checkpoint/feature_encoders.json", "data/checkpoint/checkpoint.json",
            "data/checkpoint/drift_reference.json"} <= files
    assert not [f for f in files if f.endswith(".py")]  # code is referenced, not copied
    # The drift reference travels with the model: the profile of the rows it trained on.
    reference = read_profile(local / "data/checkpoint")
    assert reference["rows"] == len(read_split(flow["data"], "train"))
    assert reference["columns"]["label"]["count"] == reference["rows"]
    mlmodel = (local / "MLmodel").read_text()
    assert "loader_module: grmodel.registry" in mlmodel
    requirements = (local / "requirements.txt").read_text().split()
    assert requirements == registry.pip_requirements() and all("==" in r for r in requirements)
    assert requirements[0] == f"grmodel=={grmodel.__version__}" and "torch==2.13.0" in requirements
    payload = torch.load(local / "data/checkpoint/model.pt", weights_only=True)
    assert set(payload) == {"state_dict", "meta"}
    vocab = json.loads((local / "data/checkpoint/label_state.json").read_text())
    assert vocab["vocab"]["kind"] == "dynamic_quantile"
    signature = mlflow.models.get_model_info(str(local)).signature
    assert signature.inputs.input_names() == ["user_id", "item_id", "item_cat"]


def test_champion_reference_is_the_profile_of_its_training_rows(flow):
    champion = registry.alias_version(NAME, "champion", flow["uri"])
    found = registry.champion_reference(NAME, flow["uri"])
    assert found.about["version"] == champion and found.reason == ""
    assert found.about["description"] == f"champion version {champion} of {NAME}"
    assert found.profile["rows"] == len(read_split(flow["data"], "train"))
    assert found.about["source_run_id"] == next(
        r["run_id"] for r in flow["runs"] if r["version"] == champion)
    first = registry.champion_reference("never-registered", flow["uri"])
    assert first.profile is None and first.reason == "no registered model 'never-registered' yet"


def test_a_champion_logged_without_its_data_has_no_reference(flow):
    """Logged without its processed dataset (as models were before they carried a
    reference): no reference, and the reason names the version."""
    uri, name = flow["uri"], f"{NAME}-no-reference"
    with (tracking.pipeline_run(uri, pipeline_run_id="pipeline-no-reference",
                                data_version="0123abcd.dir",
                                artifact_root=flow["artifact_root"]) as parent,
          tracking.stage_run(uri, parent, "train_gr") as train_run):
        registry.log_model(flow["trained"]["good"].model_dir)
    version = registry.register_model(name, train_run, tracking_uri=uri)
    tracking.connect(uri).set_registered_model_alias(name, "champion", version.version)
    found = registry.champion_reference(name, uri)
    assert found.profile is None and found.about["version"] == str(version.version)
    assert found.reason.startswith(f"champion version {version.version} of {name} has no"
                                   " drift_reference.json")
    lacking = registry.champion_reference(NAME + "-unknown-alias", uri)
    assert lacking.profile is None


def test_registry_cli_history_and_promote(flow, capsys):
    parser = argparse.ArgumentParser()
    registry_commands.register(parser.add_subparsers(dest="command"))

    def run(*argv: str, status: int = 0) -> str:
        args = parser.parse_args(["registry", *argv, "--tracking-uri", flow["uri"]])
        assert args.handler(args) == status
        return capsys.readouterr().out

    out = run("history", NAME)
    assert "none → v2" in out and "current champion: v2" in out
    assert "mae < champion" in out  # the reason v3 was rejected
    record = json.loads(run("history", NAME, "--json"))
    assert [d["verdict"] for d in record["decisions"]][:3] == ["rejected", "promoted", "rejected"]
    assert record["champion"] == "2"
    # A rejection exits 1 (the README's code for a failed gate); without --metrics the training
    # median is not there to beat: new inputs, so a second decision on v3, recorded as such.
    out = run("promote", NAME, "--version", "3", "--data", str(flow["data"]), status=1)
    assert "rejected (decision 2); champion: v2" in out


def test_failed_runs_never_move_champion(flow, tmp_path):
    """Runs after the other flow tests: it adds a version that stays ungated."""
    uri, data = flow["uri"], flow["data"]
    root = None if uri.startswith("http") else tmp_path
    with pytest.raises(RuntimeError, match="training diverged"), tracking.pipeline_run(
        uri, pipeline_run_id="pipeline-failed", data_version="x", artifact_root=root
    ) as parent, tracking.stage_run(uri, parent, "train_gr"):
        raise RuntimeError("training diverged")
    client = tracking.connect(uri)
    assert client.get_run(parent).info.status == "FAILED"
    # A gate that fails (here: the test data is missing) records nothing and moves nothing.
    with tracking.pipeline_run(uri, pipeline_run_id="pipeline-d", data_version="x",
                               artifact_root=root) as parent, tracking.stage_run(
                                   uri, parent, "train_gr") as run_id:
        registry.log_model(flow["trained"]["good"].model_dir, data)
    version = str(registry.register_model(NAME, run_id, tracking_uri=uri).version)
    with pytest.raises(ValueError, match="test.parquet"):
        registry.gate(NAME, version, tmp_path / "missing", policy=POLICY, tracking_uri=uri)
    assert registry.VERDICT_TAG not in client.get_model_version(NAME, version).tags
    assert registry.alias_version(NAME, registry.CHAMPION, uri) == "2"


def test_mlflow_models_serve_serves_the_champion(http_flow, tmp_path, processes):
    port = processes.free_port()
    log = tmp_path / "serve.log"
    proc = processes.start([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                            f"models:/{NAME}@champion", "--env-manager", "local", "-h", "127.0.0.1",
                            "-p", str(port), "-w", "1"], log, MLFLOW_TRACKING_URI=http_flow["uri"])
    try:
        processes.wait_http(proc, f"http://127.0.0.1:{port}/ping", log)
        test = read_split(http_flow["data"], "test").head(7)
        body = {"dataframe_split": test[["user_id", "item_id", "item_cat"]].to_dict(orient="split")}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            served = json.loads(response.read())["predictions"]
    finally:
        processes.stop(proc)
    model = load_checkpoint(http_flow["trained"]["good"].model_dir)[0]
    np.testing.assert_allclose(served, predict_frame(model, pd.DataFrame(test)), rtol=1e-5)


def test_registry_cli_without_a_tracking_server_stops_before_touching_the_disk(tmp_path, monkeypatch,
                                                                                capsys):
    from grmodel.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    for argv in (["history", NAME], ["register", NAME, "--run-id", "abc"],
                 ["promote", NAME, "--version", "1", "--data", str(tmp_path)]):
        assert main(["registry", *argv]) == 1
        assert "pass --tracking-uri URI or set MLFLOW_TRACKING_URI" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no stray ./mlflow.db, no mlruns/

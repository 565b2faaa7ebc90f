"""The stage functions' contracts beyond the happy path (tests/components runs them all in
order): exact data versions from a real git + DVC repository, and clear refusals that leave
no output behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from dvc.repo import Repo

from grmodel import outputs, versioning
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.pipeline.stages import labels, train
from grmodel.pipeline.stages.data import fetch_data, ingest, raw_dir, validate_data
from grmodel.pipeline.stages.plan import gr_config
from grmodel.pipeline.stages.record import StageError, StageRecord


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _record(repo: Path, seed: int) -> str:
    generate_kuairec(repo / "data", SynthConfig.preset("tiny", seed=seed))
    version = versioning.snapshot(repo)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"data seed {seed}")
    return version


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory) -> tuple[Path, str, str]:
    """A git + DVC repository with a local remote and two data versions (the second checked out)."""
    base = tmp_path_factory.mktemp("dvc-source")
    repo = base / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    Repo.init(str(repo)).close()
    with Repo(str(repo)) as dvc, dvc.config.edit("repo") as conf:
        conf["remote"]["local"] = {"url": str(base / "remote")}
        conf["core"]["remote"] = "local"
    return repo, _record(repo, 1), _record(repo, 2)


def test_fetch_reads_the_recorded_version_and_any_older_one(dvc_repo, tmp_path):
    repo, v1, v2 = dvc_repo
    now = fetch_data(tmp_path / "now", source="dvc", data_repo=str(repo))
    assert now["data_version"] == v2 and now["obtained"] == "present"
    old = fetch_data(tmp_path / "old", source="dvc", data_repo=str(repo), data_version=v1)
    assert old["data_version"] == v1 and old["obtained"] == "exported"
    assert versioning.directory_hash(raw_dir(tmp_path / "old")) == v1
    assert versioning.require_version(repo) == v2  # the workspace is left as it was
    record = StageRecord.read(tmp_path / "old")
    assert record.params["data"]["data_version"] == v1


def test_fetch_clones_a_repository_url_and_pulls_from_its_remote(dvc_repo, tmp_path):
    repo, _, v2 = dvc_repo
    fetched = fetch_data(tmp_path / "out", source="dvc", data_repo=f"file://{repo}")
    assert fetched["data_version"] == v2 and fetched["obtained"] == "pulled"
    # the raw version, its stage record and grmodel's output mark, nothing else
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["raw", "stage.json", outputs.MARKER])
    assert outputs.is_grmodel_output(tmp_path / "out")


def test_fetch_refuses_a_workspace_edited_after_dvc_add(dvc_repo, tmp_path):
    repo, _, v2 = dvc_repo
    matrix = repo / "data" / "small_matrix.csv"
    original = matrix.read_bytes()
    try:
        matrix.write_bytes(original + b"1,2,3000,4000,,,1593878400.0,0.75\n")
        with pytest.raises(versioning.VersioningError, match="changes that no data version records"):
            fetch_data(tmp_path / "out", source="dvc", data_repo=str(repo), data_version=v2)
        assert not (tmp_path / "out").exists()
    finally:
        matrix.write_bytes(original)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"source": "s3"}, "expected one of"),
    ({"source": "dvc", "data_repo": ""}, "data_repo is empty"),
    ({"source": "path", "data_repo": "/nonexistent"}, "not a directory"),
    ({"source": "generate", "preset": "tiny", "data_version": "0" * 32 + ".dir"}, "hashes to"),
])
def test_fetch_errors_leave_no_output(tmp_path, kwargs, message):
    with pytest.raises(StageError, match=message):
        fetch_data(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def processed(planted_dataset) -> Path:
    """An ingest output: the processed dataset itself (here the planted one)."""
    return planted_dataset


def test_vocabulary_and_tokens_refuse_another_config_or_other_labels(processed, tmp_path):
    labels.build_vocab(processed, tmp_path / "vocab", ["vocab.decay=0.98"])
    labels.encode_labels(processed, tmp_path / "vocab", tmp_path / "tokens", ["vocab.decay=0.98"])
    config = gr_config(processed, ["vocab.decay=0.97"])
    with pytest.raises(StageError, match="built with vocab config"):
        labels.read_vocabulary(tmp_path / "vocab", config, processed)
    with pytest.raises(StageError, match="built with vocab config"):
        labels.encode_labels(processed, tmp_path / "vocab", tmp_path / "t2", ["vocab.decay=0.97"])
    assert not (tmp_path / "t2").exists()
    with pytest.raises(StageError, match="not the 3 training labels"):
        labels.read_tokens(tmp_path / "tokens", np.array([1.0, 2.0, 3.0]))
    with pytest.raises(StageError, match="build_vocab and encode_labels"):
        train.train(processed, tmp_path / "model", model="gr")


def test_unknown_options_and_kinds_are_named(processed, tmp_path):
    with pytest.raises(StageError, match=r"unknown option\(s\) \['splitt'\]"):
        ingest(tmp_path, tmp_path / "out", {"splitt": "random"})
    with pytest.raises(StageError, match="validation kind 'tokens'"):
        validate_data(processed, "tokens", tmp_path / "report")
    with pytest.raises(StageError, match="stage.json"):
        StageRecord.read(tmp_path)


class TrainingOperator:
    """A stand-in for the Kubeflow Training Operator (no cluster runs here): creating a
    PyTorchJob runs the Master's `grmodel train` command in-process, with the pod's claim
    paths mapped to a local directory; the job then reads Succeeded."""

    def __init__(self, mount: Path, pod_mount: str):
        self.mount, self.pod_mount, self.jobs = mount, pod_mount, {}

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        from grmodel.cli import main

        spec = body["spec"]["pytorchReplicaSpecs"]
        command = spec["Master"]["template"]["spec"]["containers"][0]["command"]
        args = command[command.index("grmodel.cli") + 1:]
        local = [a.replace(self.pod_mount, str(self.mount)).replace("$$(", "$(") for a in args]
        assert main(local) == 0
        self.jobs[body["metadata"]["name"]] = {**body, "replicas": 1 + spec["Worker"]["replicas"]}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        return {**self.jobs[name], "status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}


def test_gr_trains_as_a_pytorchjob_on_the_shared_claim(processed, tmp_path):
    from grmodel.k8s.claim import DEFAULT_MOUNT
    from grmodel.training.records import TRAINING_RECORD, dataset_fingerprint, finished_run

    # a one-epoch model this small predicts near-constant: keep it (marked) rather than fail,
    # since this test is about where and how GR trains, not how well
    overrides = ["model.d_model=16", "model.n_heads=2", "model.n_layers=1", "train.epochs=1",
                 "train.progress=false", "train.num_threads=1", "train.on_collapse=warn"]
    labels.build_vocab(processed, tmp_path / "vocab", overrides)
    labels.encode_labels(processed, tmp_path / "vocab", tmp_path / "tokens", overrides)
    operator = TrainingOperator(tmp_path / "claim", DEFAULT_MOUNT)
    result = train.train(processed, tmp_path / "model", model="gr", overrides=overrides,
                          vocab_dir=tmp_path / "vocab", tokens_dir=tmp_path / "tokens", replicas=2,
                          pvc_claim="rwx", job_options={"api": operator, "local_mount": tmp_path / "claim",
                                                        "namespace": "ml", "poll_s": 0.0})
    assert result["seed2024.best_valid_mae"] > 0
    (job,) = operator.jobs.values()
    assert job["replicas"] == 2 and job["metadata"]["namespace"] == "ml"
    seed_dir = tmp_path / "model" / "seed2024"
    assert (seed_dir / TRAINING_RECORD).is_file()
    config = gr_config(processed, overrides)
    data = processed
    assert finished_run(seed_dir, config, dataset_fingerprint(data)) is not None  # evaluate takes it
    with pytest.raises(StageError, match="ReadWriteMany claim"):
        train.train(processed, tmp_path / "m2", model="gr", overrides=overrides, replicas=2,
                     vocab_dir=tmp_path / "vocab", tokens_dir=tmp_path / "tokens")
    with pytest.raises(StageError, match="only GR trains as a PyTorchJob"):
        train.train(processed, tmp_path / "m3", model="cread", replicas=2, pvc_claim="rwx")


def test_the_gbdt_is_a_pipeline_baseline_and_a_bar_of_the_gate(processed, tmp_path):
    """``baselines=[..., "gbdt"]``: the train stage fits it, the evaluate stage scores it beside
    the constants, and a gate that lists it requires GR to beat it."""
    from grmodel.pipeline.stages.evaluate import evaluate
    from grmodel.registry import PromotionPolicy, decide

    quick = ["gbdt:head.gbdt_rounds=50", "gbdt:head.gbdt_early_stop=10"]
    result = train.train(processed, tmp_path / "gbdt", model="gbdt", overrides=quick)
    assert result["model"] == "gbdt" and result["seed2024.best_valid_mae"] > 0
    assert (tmp_path / "gbdt" / "seed2024" / "model.txt").is_file()
    scored = evaluate(processed, {"gbdt": tmp_path / "gbdt"}, tmp_path / "eval", overrides=quick)
    bar = scored["metrics"]["gbdt"]
    assert bar["mae"] < scored["metrics"]["train_median"]["mae"]
    policy = PromotionPolicy(require_beats_baselines=("gbdt",))
    worse = {"mae": bar["mae"] * 1.1, "xauc": bar["xauc"]}
    checks = decide(policy, worse, None, {"gbdt": bar})
    assert [c["check"] for c in checks] == ["mae < gbdt", "xauc ~ gbdt"] and not checks[0]["passed"]


def test_a_baseline_collapsed_on_every_seed_is_left_out_of_the_gate_with_the_reason():
    from grmodel.pipeline.stages.evaluate import headline_metrics
    from grmodel.pipeline.stages.plan import model_plan
    from grmodel.registry import PromotionPolicy, decide

    summary = {"tpm": {"mae": {"mean": 5.0}, "xauc": {"mean": 0.5}, "seeds": [1, 2],
                       "collapsed": ["seed 1: near-constant", "seed 2: near-constant"]},
               "cread": {"mae": {"mean": 4.0}, "xauc": {"mean": 0.6}, "seeds": [1, 2],
                         "collapsed": ["seed 1: near-constant"]},
               "gr": {"mae": {"mean": 4.5}, "xauc": {"mean": 0.7}, "seeds": [1, 2], "collapsed": None}}
    metrics = headline_metrics({"summary": summary})
    assert metrics["tpm"]["collapsed"] == 1.0 and "collapsed" not in metrics["cread"]
    checks = decide(PromotionPolicy(), metrics["gr"], None, metrics)
    tpm = [c for c in checks if c["check"] == "mae < tpm"][0]
    assert tpm["passed"] and tpm["detail"].startswith("left out: baseline 'tpm' collapsed")
    assert not [c for c in checks if c["check"] == "mae < cread"][0]["passed"]  # still a bar
    # Baselines keep (and mark) a collapsed model so the run reaches the gate; GR still fails.
    plan = model_plan(Path("data"), ["gr", "tpm"], ["tpm:train.on_collapse=fail"], 1)
    configs = {row.name: config for row, _, config in plan.runs}
    assert configs["gr"].train.on_collapse == "fail" and configs["tpm"].train.on_collapse == "fail"
    plan = model_plan(Path("data"), ["gr", "tpm"], None, 1)
    assert {row.name: c.train.on_collapse for row, _, c in plan.runs} == {"gr": "fail", "tpm": "warn"}

"""Fault injection on the pipeline's stages, run as their components run them (a process each):
ingest, GR training (at a seeded random step), evaluation and registration are each killed
with SIGKILL mid-write, then run again. The run then ends exactly as an uninterrupted one
(same data, model, metrics and gate decision), no temporary output or live-looking MLflow run
survives, and the model is registered once (a real MLflow sqlite registry). The vocabulary
stage is killed the same way in tests/test_faults.py.

An unreachable tracking server makes the register step fail at once with one line, and the
registry is unchanged.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiny_runs import TINY_RUN

from grmodel.training.records import dataset_fingerprint

SEED = 15  # the kill points' seed (deterministic "random" points)
TINY = [*TINY_RUN, "train.batch_size=64", "train.epochs=3", "train.patience=3",
        "data.max_train_rows=1500", "train.on_collapse=warn"]  # a toy model may collapse
MODEL_NAME = "faults-gr"

# One stage call from a JSON spec; the killed attempt runs it in a process, the rerun here.
STAGE_CODE = '''
def run(spec):
    from grmodel.pipeline import publish
    from grmodel.pipeline.stages import data, evaluate, labels, train
    from grmodel.registry import PromotionPolicy

    kwargs = dict(spec["kwargs"])
    if spec["stage"] == "track_and_register":
        target = publish.TrackingTarget(**kwargs.pop("target"))
        policy = PromotionPolicy(require_beats_baselines=())
        return publish.track_and_register(target, policy=policy, **kwargs)
    stages = {"fetch_data": data.fetch_data, "ingest": data.ingest,
              "build_vocab": labels.build_vocab, "encode_labels": labels.encode_labels,
              "train": train.train, "evaluate": evaluate.evaluate}
    return stages[spec["stage"]](*spec["args"], **kwargs)
'''


def run_here(spec: dict[str, Any]) -> Any:
    namespace: dict[str, Any] = {}
    exec(STAGE_CODE, namespace)  # the same code the killed process ran
    return namespace["run"](spec)


def spec(stage: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"stage": stage, "args": [str(a) if isinstance(a, Path) else a for a in args],
            "kwargs": kwargs}


def kill_when(stage_spec: dict[str, Any], cwd: Path, ready: Callable[[subprocess.Popen], bool],
              delay: float = 0.0) -> None:
    """Run the stage in a process; SIGKILL it ``delay`` seconds after ``ready`` holds."""
    code = f"{STAGE_CODE}\nimport json, sys\nrun(json.loads(sys.argv[1]))\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "GRMODEL_PROGRESS_EVENTS": "1"}  # training prints a line at each epoch end
    with open(cwd / f"{stage_spec['stage']}.err", "w") as err:
        # A script file, not `python -c`: with pyspark installed, importing great_expectations
        # under -c ends the process at once with status 0 ("Skipping doctests").
        script = cwd / f"run_{stage_spec['stage']}_stage.py"
        script.write_text(code)
        proc = subprocess.Popen([sys.executable, str(script), json.dumps(stage_spec)], cwd=cwd,
                                env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        deadline = time.monotonic() + 300
        while not ready(proc):
            assert proc.poll() is None, (f"{stage_spec['stage']} ended before it could be killed:"
                                         f" {(cwd / (stage_spec['stage'] + '.err')).read_text()}")
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"{stage_spec['stage']} finished before the kill"


def filled(pattern: str, root: Path) -> Callable[[subprocess.Popen], bool]:
    """The stage has begun writing its temporary output."""
    return lambda _proc: any(p.is_dir() and any(p.iterdir()) for p in root.glob(pattern))


def trained_epoch(epoch: int) -> Callable[[subprocess.Popen], bool]:
    """Training printed the event line of ``epoch``'s end (grmodel.progress)."""
    def ready(proc: subprocess.Popen) -> bool:
        line = proc.stdout.readline()
        if not line.startswith("grmodel-progress "):
            return False
        event = json.loads(line.removeprefix("grmodel-progress "))
        return event["epoch"] == epoch and event["batch"] == event["batches"]
    return ready


def rows(db: Path, table: str) -> int:
    """Rows of an MLflow sqlite table (0 while the store is being created)."""
    if not db.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute(f"select count(*) from {table}").fetchone()[0]
    except sqlite3.OperationalError:  # no such table yet, or locked for a moment
        return 0


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if ".tmp-" in p.name or ".old-" in p.name or p.name.endswith(".tmp")
                  or (p.name.startswith(".") and p.name.endswith(".lock")))


def target(root: Path) -> dict[str, str]:
    return {"uri": f"sqlite:///{root / 'mlflow.db'}", "pipeline_run_id": "run-1",
            "experiment": "faults", "artifact_root": str(root / "mlartifacts")}


def register_spec(root: Path, version: str, uri_target: dict[str, str] | None = None
                  ) -> dict[str, Any]:
    dirs = ["fetched", "processed", "vocab", "tokens", "gr", "evaluation"]
    return spec("track_and_register", target=uri_target or target(root), data_version=version,
                stage_dirs=[str(root / d) for d in dirs], processed=str(root / "processed"),
                gr_model_dir=str(root / "gr"), evaluation_dir=str(root / "evaluation"),
                model_name=MODEL_NAME, out_dir=str(root / "decision"))


def uninterrupted(root: Path) -> dict[str, Any]:
    """Every stage once, in order, without faults: the reference."""
    root.mkdir()
    version = run_here(spec("fetch_data", root / "fetched", source="generate", preset="tiny",
                            data_seed=3))["data_version"]
    run_here(spec("ingest", root / "fetched", root / "processed"))
    run_here(spec("build_vocab", root / "processed", root / "vocab", TINY))
    run_here(spec("encode_labels", root / "processed", root / "vocab", root / "tokens", TINY))
    run_here(spec("train", root / "processed", root / "gr", model="gr", overrides=TINY,
                  vocab_dir=str(root / "vocab"), tokens_dir=str(root / "tokens")))
    run_here(spec("evaluate", root / "processed", {"gr": str(root / "gr")}, root / "evaluation",
                  overrides=TINY, data_version=version))
    decision = run_here(register_spec(root, version))
    return {"version": version, "decision": decision}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("reference") / "run"
    return root, uninterrupted(root)


def same_weights(a: Path, b: Path) -> bool:
    """Two checkpoints (each verified against its recorded sha256 on load) hold equal weights."""
    import torch

    from grmodel.checkpoint import load_checkpoint

    first, second = load_checkpoint(a)[0].state_dict(), load_checkpoint(b)[0].state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _comparable(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in decision.items() if k not in ("decided_at", "run_id")}


@pytest.mark.long
def test_each_stage_killed_mid_write_then_rerun_ends_as_an_uninterrupted_run(reference, tmp_path):
    from mlflow import MlflowClient

    from grmodel.registry import resolve_model_uri

    ref_root, ref = reference
    rng = random.Random(SEED)
    root = tmp_path / "run"
    root.mkdir()
    version = run_here(spec("fetch_data", root / "fetched", source="generate", preset="tiny",
                            data_seed=3))["data_version"]
    assert version == ref["version"]

    # ingest: killed once its temporary output holds files
    ingest = spec("ingest", root / "fetched", root / "processed")
    kill_when(ingest, root, filled("processed.tmp-*", root), rng.uniform(0, 0.05))
    if (root / "processed").exists():  # killed after its output was in place: complete
        assert dataset_fingerprint(root / "processed") == dataset_fingerprint(ref_root / "processed")
    run_here(ingest)
    assert dataset_fingerprint(root / "processed") == dataset_fingerprint(ref_root / "processed")
    run_here(spec("build_vocab", root / "processed", root / "vocab", TINY))
    run_here(spec("encode_labels", root / "processed", root / "vocab", root / "tokens", TINY))

    # GR training: killed at a random step after the first epoch (or the second)
    train = spec("train", root / "processed", root / "gr", model="gr", overrides=TINY,
                 vocab_dir=str(root / "vocab"), tokens_dir=str(root / "tokens"))
    kill_when(train, root, trained_epoch(rng.choice([0, 1])), rng.uniform(0, 0.1))
    assert not (root / "gr").exists()  # a model appears complete, after the last epoch
    run_here(train)
    model = json.loads((root / "gr" / "seed2024" / "checkpoint.json").read_text())
    expected = json.loads((ref_root / "gr" / "seed2024" / "checkpoint.json").read_text())
    assert model["best_valid"] == expected["best_valid"]
    assert same_weights(root / "gr" / "seed2024", ref_root / "gr" / "seed2024")

    # evaluation: killed once its report is being written
    evaluate = spec("evaluate", root / "processed", {"gr": str(root / "gr")}, root / "evaluation",
                    overrides=TINY, data_version=version)
    kill_when(evaluate, root, filled("evaluation.tmp-*", root), rng.uniform(0, 0.2))
    if (root / "evaluation").exists():  # killed after its output was in place: complete
        assert (root / "evaluation" / "stage.json").is_file()
    run_here(evaluate)
    metrics = json.loads((root / "evaluation" / "metrics.json").read_text())
    assert metrics == json.loads((ref_root / "evaluation" / "metrics.json").read_text())

    # register: killed once the parent run exists, then once the version is registered
    register = register_spec(root, version)
    db = root / "mlflow.db"
    kill_when(register, root, lambda _p: rows(db, "runs") >= 1, rng.uniform(0, 0.2))
    kill_when(register, root, lambda _p: rows(db, "model_versions") >= 1)
    assert not (root / "decision" / "decision.json").exists()
    decision = run_here(register)
    assert _comparable(decision) == _comparable(ref["decision"])

    client = MlflowClient(f"sqlite:///{db}")
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert [str(v.version) for v in versions] == ["1"]  # registered once
    experiment = client.get_experiment_by_name("faults").experiment_id
    runs = client.search_runs([experiment])
    assert not [r for r in runs if r.info.status == "RUNNING"]  # killed attempts: KILLED
    registers = [r for r in runs if r.data.tags.get("stage") == "register"]
    statuses = [r.info.status for r in registers]  # one finished, the killed ones KILLED
    assert statuses.count("FINISHED") == 1 and set(statuses) <= {"FINISHED", "KILLED"}
    parent = client.get_run(registers[0].data.tags["mlflow.parentRunId"])
    assert parent.data.metrics["gate.promoted"] == float(decision["verdict"] == "promoted")

    # The registered model is complete (its digests verify) and is the reference model.
    downloaded = resolve_model_uri(f"models:/{MODEL_NAME}/1", f"sqlite:///{db}",
                                   dst_dir=tmp_path / "download")
    assert same_weights(downloaded, ref_root / "gr" / "seed2024")
    assert leftovers(root) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens


def test_an_unreachable_tracking_server_fails_register_at_once_and_changes_nothing(reference,
                                                                                     tmp_path):
    from grmodel.cli import error_line
    from grmodel.pipeline.stages.record import StageError

    ref_root, ref = reference
    store = (ref_root / "mlflow.db").read_bytes()
    url = f"http://user:s3cret@127.0.0.1:{_closed_port()}"
    down = register_spec(ref_root, ref["version"], {**target(ref_root), "uri": url})
    down["kwargs"]["out_dir"] = str(tmp_path / "decision")
    started = time.monotonic()
    with pytest.raises(StageError) as failed:
        run_here(down)
    assert time.monotonic() - started < 30  # not MLflow's minutes of retries
    line, status = error_line("pipeline run", failed.value)
    assert "\n" not in line and status == 1
    assert "127.0.0.1" in line and "Connection refused" in line
    assert "unreachable" in line and "nothing was tracked or registered" in line
    assert "(rule: " in line and "s3cret" not in line
    assert (ref_root / "mlflow.db").read_bytes() == store  # the registry is unchanged
    assert not (tmp_path / "decision").exists()

"""Fault injection on tiny data: a stage killed with SIGKILL mid-write, then run again, ends
exactly as an uninterrupted run (same metrics and data), and no partial artifact survives; two
writers of one output never corrupt it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_runs import TINY_RUN

from grmodel.training.records import dataset_fingerprint

TINY = [*TINY_RUN, "train.batch_size=64", "train.epochs=2", "train.patience=2",
        "data.max_train_rows=1500", "train.checkpoint_every_steps=3",
        "train.on_collapse=warn"]  # a toy model may collapse


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "grmodel.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(args: list[str], cwd: Path) -> str:
    proc = _start(args, cwd)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


def _kill_when(args: list[str], cwd: Path, ready: Callable[[], bool]) -> None:
    """Start the command, SIGKILL it as soon as ``ready()`` holds (mid-write)."""
    proc = _start(args, cwd)
    deadline = time.monotonic() + 300
    while not ready():
        assert proc.poll() is None, f"finished before it could be killed: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if ".tmp-" in p.name or ".old-" in p.name or p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    _run(["data", "synth", "raw", "--preset", "tiny", "--seed", "9"], root)
    _run(["data", "ingest", "raw", "p"], root)
    return root


def test_ingest_killed_mid_write_then_rerun(work, tmp_path):
    (tmp_path / "raw").symlink_to(work / "raw")
    _kill_when(["data", "ingest", "raw", "q"], tmp_path, lambda: any(tmp_path.glob("q.tmp-*")))
    assert not (tmp_path / "q").exists()  # nothing half-written where a reader would look
    _run(["data", "ingest", "raw", "q"], tmp_path)  # sweeps the killed writer's temporary
    assert _leftovers(tmp_path) == []
    assert dataset_fingerprint(tmp_path / "q") == dataset_fingerprint(work / "p")


def test_training_killed_at_a_random_step_resumes_to_the_same_model(work, tmp_path):
    step = random.Random(os.getpid()).randint(3, 30)  # printed on failure
    args = ["train", "--data", str(work / "p"), "--out", "m", "--resume", *TINY]
    _run([*args[:4], "full", *TINY], tmp_path)  # the uninterrupted run
    full = json.loads((tmp_path / "full" / "checkpoint.json").read_text())

    def at_step() -> bool:
        state = tmp_path / "m.state" / "state.json"
        try:
            return json.loads(state.read_text())["step"] >= step
        except (OSError, ValueError):
            return False

    _kill_when(args, tmp_path, at_step)
    assert not (tmp_path / "m").exists()
    _run(args, tmp_path)
    resumed = json.loads((tmp_path / "m" / "checkpoint.json").read_text())
    assert resumed["best_valid"] == full["best_valid"], step
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"]
                                                             for h in full["history"]], step
    assert not (tmp_path / "m.state").exists()  # removed once the model is published
    assert _leftovers(tmp_path) == []


@pytest.mark.long
def test_evaluate_killed_at_a_random_moment_then_rerun(work, tmp_path):
    _run(["train", "--data", str(work / "p"), "--out", "m", *TINY], tmp_path)
    args = ["evaluate", "--data", str(work / "p"), "--model", "gr=m", "--out", "metrics.json"]
    reference = _run([*args[:-1], "reference.json"], tmp_path)
    started = time.monotonic()
    delay = random.Random(os.getpid()).uniform(0.5, 4.0)
    proc = _start(args, tmp_path)
    while proc.poll() is None and time.monotonic() - started < delay:
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    if (tmp_path / "metrics.json").exists():  # finished before the kill: complete, never partial
        assert json.loads((tmp_path / "metrics.json").read_text())
        (tmp_path / "metrics.json").unlink()
    assert _run(args, tmp_path) == reference
    assert (json.loads((tmp_path / "metrics.json").read_text())
            == json.loads((tmp_path / "reference.json").read_text()))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".metrics.json")]


@pytest.mark.long
def test_vocabulary_stage_killed_at_a_random_moment_then_rerun(work, tmp_path):
    """The pipeline's build_vocab stage, run as its component runs it (a process)."""
    (tmp_path / "processed").symlink_to(work / "p")  # an ingest output is the processed dataset
    code = ("import sys; from grmodel.pipeline.stages.labels import build_vocab\n"
            "build_vocab('processed', sys.argv[1], ['model.n_layers=1'])\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def stage(out: str) -> subprocess.Popen:
        # A script file, not `python -c`: with pyspark installed, importing great_expectations
        # under -c ends the process at once with status 0 ("Skipping doctests").
        script = tmp_path / "stage.py"
        script.write_text(code)
        return subprocess.Popen([sys.executable, str(script), out], cwd=tmp_path, env=env,
                                stderr=subprocess.PIPE, text=True)

    def finished(proc: subprocess.Popen) -> None:
        err = proc.communicate(timeout=600)[1]
        assert proc.returncode == 0, err  # the stage's one-line error on failure

    finished(stage("reference"))
    proc = stage("vocab")
    time.sleep(random.Random(os.getpid()).uniform(0.5, 4.0))
    proc.kill()
    proc.communicate()
    if (tmp_path / "vocab").exists():  # finished before the kill: complete, never partial
        assert json.loads((tmp_path / "vocab" / "vocabulary.json").read_text())
    finished(stage("vocab"))
    assert ((tmp_path / "vocab" / "vocabulary.json").read_text()
            == (tmp_path / "reference" / "vocabulary.json").read_text())
    assert _leftovers(tmp_path) == []


def test_two_writers_of_one_output_never_corrupt_it(work, tmp_path):
    (tmp_path / "raw").symlink_to(work / "raw")
    procs = [_start(["data", "ingest", "raw", "q"], tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=600), p.communicate()[1]) for p in procs]
    for code, err in results:  # each finished, or was refused with one line naming the rule
        assert code == 0 or ("another grmodel process is writing it" in err
                             or "already holds a grmodel output" in err), err
    assert any(code == 0 for code, _ in results)
    assert dataset_fingerprint(tmp_path / "q") == dataset_fingerprint(work / "p")
    assert _leftovers(tmp_path) == [] and not list(tmp_path.glob(".q.lock"))


# ------------------------------------------------------------ one writer, full disks, kills

VR = ["--model", "vr", "model.emb_dim=8", "model.encoder_hidden=16", "train.progress=false",
      "train.num_threads=1", "train.epochs=1", "train.batch_size=256", "train.on_collapse=warn"]


@pytest.fixture(scope="module")
def scoring(work) -> Path:
    """A tiny VR on p, and big.parquet: the test split repeated (a write that takes seconds)."""
    _run(["train", "--data", "p", "--out", "vr", *VR], work)
    import pyarrow as pa
    import pyarrow.parquet as pq

    test = pq.read_table(work / "p" / "test.parquet")
    pq.write_table(pa.concat_tables([test] * 400), work / "big.parquet", row_group_size=50_000)
    return work


def _predict(out: str, root: Path) -> list[str]:
    return ["predict", "--model", str(root / "vr"), "--input", str(root / "big.parquet"),
            "--output", out, "--batch-size", "512"]


@pytest.mark.long
def test_a_second_writer_of_one_output_is_refused(scoring, tmp_path):
    """Two predict (or train) runs to one output: the second is refused at once while the first
    goes on (before, both exited 0 and the later one silently replaced the earlier)."""
    for args, lock in ((_predict("out.parquet", scoring), ".out.parquet.lock"),
                       (["train", "--data", str(scoring / "p"), "--out", "m", *VR,
                         "train.epochs=500", "train.patience=500"], ".m.lock")):
        first = _start(args, tmp_path)
        deadline = time.monotonic() + 120
        while not (tmp_path / lock).exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        second = _start(args, tmp_path)
        _, err = second.communicate(timeout=120)
        running = first.poll() is None
        first.send_signal(signal.SIGTERM)  # stopped: its temporaries go, nothing is published
        first.communicate(timeout=120)
        assert second.returncode == 1, err
        assert err.strip().splitlines()[-1].endswith("another grmodel process is writing it"
                                                     " (rule: one writer per output; wait for it,"
                                                     " or choose another path)"), err
        assert running or first.returncode == 0  # refused while the first was writing
        output = tmp_path / ("out.parquet" if args[0] == "predict" else "m")
        assert first.returncode == 0 or not output.exists()  # stopped: nothing half-written
    assert _leftovers(tmp_path) == [] and not list(tmp_path.glob(".*.lock"))


@pytest.mark.long
def test_predict_killed_mid_write_leaves_a_temporary_that_the_next_run_sweeps(scoring, tmp_path):
    _kill_when(_predict("out.parquet", scoring), tmp_path,
               lambda: any(tmp_path.glob(".out.parquet.*.tmp")))
    assert not (tmp_path / "out.parquet").exists()
    assert list(tmp_path.glob(".out.parquet.*.tmp"))  # what SIGKILL leaves: nothing can clean it
    _run(_predict("out.parquet", scoring), tmp_path)
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "out.parquet"]


def _limited(args: list[str], cwd: Path, max_bytes: int) -> subprocess.CompletedProcess:
    """The command with every file it writes capped at ``max_bytes`` (RLIMIT_FSIZE): a write
    the file system refuses, as on a full disk (Python ignores SIGXFSZ, so the write fails)."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "grmodel.cli", *args], cwd=cwd, env=env,
                          preexec_fn=cap, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", ["predict", pytest.param("train", marks=pytest.mark.long)])
def test_a_full_disk_is_the_environments_fault_and_leaves_nothing(command, scoring, tmp_path):
    """Before: predict blamed its input (exit 1), train called it a bug (exit 70) and left an
    empty m.state/. Now: exit 3, the file that could not be written, nothing left behind."""
    args = (_predict("out.parquet", scoring) if command == "predict" else
            ["train", "--data", str(scoring / "p"), "--out", "m", "--model", "gr", *VR[2:]])
    done = _limited(args, tmp_path, 20_000)
    line = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 3, done.stderr
    assert line.startswith(f"grmodel {command}: error: environment: ") and "cannot write" in line
    assert "(rule: the file system must have room" in line and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no output, no state directory, no temporary

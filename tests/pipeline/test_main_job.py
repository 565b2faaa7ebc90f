"""The main job's arguments; the pipeline it runs is tested end to end in tests/pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from grmodel.pipeline.main_job import MAIN_JOB_OVERRIDES, main_job_params

REPO = Path(__file__).resolve().parents[2]


def test_the_recorded_default_comes_from_dvc_at_its_version(tmp_path):
    from grmodel.versioning import read_version

    shutil.copy(REPO / "data.dvc", tmp_path / "data.dvc")
    params = main_job_params(tmp_path / "work", repo=tmp_path)
    assert params.data_source == "dvc"
    assert params.data_repo == str(tmp_path.resolve())
    assert params.data_version == read_version(tmp_path).md5
    assert params.overrides == MAIN_JOB_OVERRIDES
    assert params.mlflow_tracking_uri == f"sqlite:///{(tmp_path / 'work' / 'mlflow.db').resolve()}"


def test_other_presets_are_generated(tmp_path):
    shutil.copy(REPO / "data.dvc", tmp_path / "data.dvc")
    params = main_job_params(tmp_path / "work", preset="tiny", seed=3, overrides=["train.lr=1e-3"],
                             repo=tmp_path)
    assert (params.data_source, params.preset, params.data_seed) == ("generate", "tiny", 3)
    assert params.overrides == [*MAIN_JOB_OVERRIDES, "train.lr=1e-3"]
    assert main_job_params(tmp_path / "w", repo=tmp_path / "no-repo").data_source == "generate"


def test_the_recorded_default_regenerates_byte_for_byte_on_this_machine(tmp_path):
    """``make main`` on a machine without the DVC remote regenerates data.dvc's version and
    verifies it: every file, the oracle's floating-point columns included, must come out with
    the recorded sha256 whatever the CPU or C library (exp/log differ in their last bits)."""
    from grmodel.versioning import read_version, regenerate

    regenerate(read_version(REPO), tmp_path / "data")  # raises VersioningError on any mismatch
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(
        [*read_version(REPO).generator["sha256"], "synth.json"])


def _clone_with_tiny_data(root: Path) -> Path:
    """A checkout whose data.dvc records the tiny preset (seed 3) with a local DVC remote, and
    no data/ yet: as a fresh clone is, so both main jobs obtain the data at the same time."""
    import subprocess

    from dvc.repo import Repo

    from grmodel import versioning
    from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)

    root.mkdir()
    git("init", "-q")
    git("config", "user.email", "test@example.com")
    git("config", "user.name", "test")
    with Repo.init(str(root)) as dvc_repo, dvc_repo.config.edit("repo") as conf:
        conf["remote"]["local"] = {"url": str(root.parent / "remote")}
        conf["core"]["remote"] = "local"
    generate_kuairec(root / "data", SynthConfig.preset("tiny", seed=3))
    versioning.snapshot(root)
    (root / ".gitignore").write_text("/data\n/runs\n")
    git("add", "-A")
    git("commit", "-q", "-m", "tiny data")
    shutil.rmtree(root / "data")
    shutil.rmtree(root / ".dvc" / "cache", ignore_errors=True)  # only the remote holds it
    return root


@pytest.mark.long  # two whole main jobs: about 4 CPU-minutes (pytest -m long)
def test_two_main_jobs_at_once_in_one_clone(tmp_path, pipeline_overrides):
    """Two `grmodel main` runs into two workdirs of one clone both finish with the same results
    and leave the clone's data intact; a third into a workdir in use is refused in one line."""
    import os
    import subprocess
    import sys
    import time

    from mlflow import MlflowClient

    from grmodel import versioning

    repo = _clone_with_tiny_data(tmp_path / "clone")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)

    def main(workdir: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "grmodel.cli", "main", "--preset", "tiny",
                                 "--seed", "3", "--workdir", workdir, *pipeline_overrides],
                                cwd=repo, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first, second = main("runs/a"), main("runs/b")
    deadline = time.monotonic() + 300
    while not (repo / "runs" / ".a.lock").exists():  # the first holds its workdir
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    third = main("runs/a")
    out, err = third.communicate(timeout=300)
    assert third.returncode == 1, out + err
    assert err.strip().splitlines() == [
        "grmodel main: error: output runs/a: another grmodel process is writing it (rule: one"
        " writer per output; wait for it, or choose another path)"]
    results = [(p.communicate(timeout=1800), p.returncode) for p in (first, second)]
    for (out, err), code in results:
        assert code == 0, out[-3000:] + err[-3000:]
    metrics = [json.loads((repo / "runs" / w / "latest" / "report" / "metrics.json").read_text())
               for w in ("a", "b")]
    assert metrics[0] == metrics[1]
    for w in ("a", "b"):  # each workdir's own registry: one version
        client = MlflowClient(f"sqlite:///{repo / 'runs' / w / 'mlflow.db'}")
        assert [str(v.version) for v in client.search_model_versions("name = 'grmodel-gr'")] == ["1"]
    assert versioning.workspace_status(repo).matches  # the clone's data: exactly data.dvc's
    left = [str(p.relative_to(repo)) for p in repo.rglob("*")
            if ".tmp-" in p.name or ".old-" in p.name or p.name.endswith(".lock")
            and p.parent.name != "tmp"]  # .dvc/tmp holds DVC's own lock files
    assert left == []

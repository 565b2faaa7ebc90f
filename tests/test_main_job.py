"""The main job's arguments; the pipeline it runs is tested end to end in tests/pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

from grmodel.main_job import MAIN_JOB_OVERRIDES, main_job_params

REPO = Path(__file__).resolve().parents[1]


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

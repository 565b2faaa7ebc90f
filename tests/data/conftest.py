"""Fixtures of the data tests: one tiny generated KuaiRec directory and its ingest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.data.kuairec.synth import DaysConfig, SynthConfig, generate_days, generate_kuairec

# The real KuaiRec side files live beside the repository (../shared from its root).
REAL_SIDE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "kuairec-side"


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("kuairec") / "raw"
    generate_kuairec(raw, SynthConfig.preset("tiny"))
    return raw


@pytest.fixture(scope="session")
def tiny_processed(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kuairec") / "processed"
    ingest_kuairec(tiny_raw, out, IngestConfig())
    return out


@pytest.fixture(scope="session")
def tiny_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five days of tiny logs (2020-09-06 .. 2020-09-10): the users' mix changes from the
    third day, the labels shift (x1.5) and a new category appears from the fourth."""
    logs = tmp_path_factory.mktemp("kuairec") / "logs"
    generate_days(logs, SynthConfig.preset("tiny"),
                  DaysConfig(days=5, mix_day=2, label_shift_day=3, new_category_day=3))
    return logs


@pytest.fixture
def raw_copy(tiny_raw: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny raw directory, for tests that damage or edit it."""
    return Path(shutil.copytree(tiny_raw, tmp_path / "raw"))


@pytest.fixture(scope="session")
def real_side_dir() -> Path:
    if not (REAL_SIDE_DIR / "user_features.csv").is_file():
        pytest.skip(f"real KuaiRec side files not found in {REAL_SIDE_DIR}")
    return REAL_SIDE_DIR

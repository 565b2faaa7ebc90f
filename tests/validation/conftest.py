"""Fixtures of the validation tests: a tiny generated KuaiRec directory and its ingest, made
once per session (great_expectations itself is imported once, on first use)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from grmodel.data.synth import SynthConfig, generate_kuairec

    raw = tmp_path_factory.mktemp("kuairec") / "raw"
    generate_kuairec(raw, SynthConfig.preset("tiny", seed=7))
    return raw


@pytest.fixture(scope="session")
def tiny_processed(tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from grmodel.data.kuairec import IngestConfig, ingest_kuairec

    out = tmp_path_factory.mktemp("kuairec") / "processed"
    ingest_kuairec(tiny_raw, out, IngestConfig(split="chronological"))
    return out

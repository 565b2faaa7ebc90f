"""Each generator family at its tiny preset: the label's shape and units, and an oracle that is
present, exact where a brute-force check is cheap, and better than the median on MAE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from grmodel.data.generators.common import GENERATOR_FILE, ORACLE_COLUMN, SOURCE_FILE, SPEC_FILE
from grmodel.data.generators.completion import CompletionConfig, generate_completion
from grmodel.data.generators.customer_value import CustomerValueConfig, generate_customer_value
from grmodel.data.generators.drifting_zeros import (
    DriftingZerosConfig,
    draw_visits,
    generate_drifting_zeros,
    oracle_median,
)
from grmodel.data.generators.rewatch import (
    RewatchConfig,
    _draw_ratio,
    _Law,
    generate_rewatch,
    oracle_ratio,
)
from grmodel.data.generators.session_ms import SessionMsConfig, generate_session_ms
from grmodel.data.io import DataSpecError
from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.data.kuairec.schema import BIG, ORACLE_FILE, SMALL
from grmodel.data.tabular import build_tabular
from grmodel.features import read_manifest, read_split


def _mae(y: np.ndarray, p: np.ndarray | float) -> float:
    return float(np.abs(y - p).mean())


def _tabular(tmp_path: Path, generate, config) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Generate, then build through the tabular spec (the code behind `grmodel data tabular`)."""
    source = tmp_path / "source"
    generate(source, config)
    frame = pd.read_parquet(source / SOURCE_FILE)
    build_tabular(source / SPEC_FILE, tmp_path / "processed")
    return frame, read_split(tmp_path / "processed", "test"), read_manifest(tmp_path / "processed")


def _oracle_beats_median(frame: pd.DataFrame, label: str) -> None:
    y = frame[label].to_numpy()
    assert _mae(y, frame[ORACLE_COLUMN].to_numpy()) < 0.95 * _mae(y, np.median(y))


def test_customer_value_is_zero_inflated_dollars_through_the_spec(tmp_path: Path):
    frame, test, manifest = _tabular(tmp_path, generate_customer_value,
                                     CustomerValueConfig.preset("tiny"))
    y = frame["value_90d"].to_numpy()
    assert len(frame) == 3_000 and (y == 0).mean() >= 0.6
    spend = y[y > 0]
    assert spend.min() >= 0.01 and np.allclose(spend, np.round(spend, 2))  # cents
    assert np.quantile(spend, 0.99) > 10 * np.median(spend)  # lognormal: a heavy right tail
    assert {"recency_bucket", "frequency_bucket", "monetary_bucket"} <= set(frame.columns)
    _oracle_beats_median(frame, "value_90d")
    # The oracle reaches the test split; it is neither a feature nor the label.
    assert manifest["oracle"]["present"] and "oracle_median" in test.columns
    assert ORACLE_COLUMN not in {f["name"] for f in manifest["features"]["fields"]}
    record = json.loads((tmp_path / "source" / GENERATOR_FILE).read_text())
    assert record["label"]["unit"] == "dollars" and record["config"]["n_rows"] == 3_000


def test_session_ms_spans_milliseconds(tmp_path: Path):
    frame, test, _ = _tabular(tmp_path, generate_session_ms, SessionMsConfig.preset("tiny"))
    y = frame["session_ms"].to_numpy()
    assert y.min() >= 1e3 and y.max() <= 1e7 and np.array_equal(y, np.rint(y))
    assert np.quantile(y, 0.99) / np.quantile(y, 0.01) > 300  # several decades
    _oracle_beats_median(frame, "session_ms")
    assert test["oracle_median"].between(1e3, 1e7).all()


def test_completion_fractions_tie_at_zero_and_one(tmp_path: Path):
    frame, _, _ = _tabular(tmp_path, generate_completion, CompletionConfig.preset("tiny"))
    y = frame["completion"].to_numpy()
    assert y.min() == 0 and y.max() == 1
    assert 0.1 < (y == 0).mean() < 0.4 and 0.15 < (y == 1).mean() < 0.5
    inner = y[(y > 0) & (y < 1)]
    assert len(inner) > 0.3 * len(y) and np.allclose(inner, np.round(inner, 3))
    oracle = frame[ORACLE_COLUMN]
    assert oracle.between(0, 1).all() and (oracle == 1).any() and ((oracle > 0) & (oracle < 1)).any()
    _oracle_beats_median(frame, "completion")


def test_drifting_zeros_split_forward_in_time_with_more_zeros_later(tmp_path: Path):
    frame, test, manifest = _tabular(tmp_path, generate_drifting_zeros,
                                     DriftingZerosConfig.preset("tiny"))
    y = frame["visit_s"].to_numpy()
    assert 0.5 < (y == 0).mean() < 0.7 and np.allclose(y[y > 0], np.round(y[y > 0], 1))
    assert y[y > 0].min() >= 0.1
    # Forward in time: every valid row after every train row, every test row after both.
    splits = {s: read_split(tmp_path / "processed", s) for s in ("train", "valid", "test")}
    assert splits["train"]["timestamp"].max() <= splits["valid"]["timestamp"].min()
    assert splits["valid"]["timestamp"].max() <= splits["test"]["timestamp"].min()
    share = {s: float((f["label"] == 0).mean()) for s, f in splits.items()}
    assert share["train"] < share["valid"] and share["train"] < share["test"]
    # The label's median is 0 in every split, and predicting 0 is close to the oracle on test.
    assert all(np.median(f["label"]) == 0 for f in splits.values())
    assert _mae(test["label"].to_numpy(), 0.0) < 1.05 * _mae(test["label"].to_numpy(),
                                                              test[ORACLE_COLUMN].to_numpy())
    record = json.loads((tmp_path / "source" / GENERATOR_FILE).read_text())
    assert record["label"]["share_zero_by_period"]["test"] > record["label"]["share_zero_by_period"]["train"]


def test_drifting_zeros_oracle_is_the_median_of_its_law():
    """The oracle of a (pi0, mu) cell against the median of 200k draws of the same law."""
    sigma = DriftingZerosConfig.preset("tiny").sigma
    rng = np.random.default_rng(0)
    for pi0, seconds in [(0.3, 20.0), (0.45, 50.0), (0.49, 5.0), (0.6, 10.0)]:
        oracle = oracle_median(np.array([pi0]), np.array([np.log(seconds)]), sigma)[0]
        draws = draw_visits(rng, np.full(200_000, pi0), np.full(200_000, np.log(seconds)), sigma)
        assert oracle == pytest.approx(np.median(draws), rel=0.03, abs=0.11)
    assert oracle == 0.0  # half the mass or more at 0


def test_oracle_median_matches_a_monte_carlo_median():
    """The rewatch law's bisection median and closed-form mean against 200k draws per pair."""
    config = RewatchConfig.preset("tiny")
    for p_skip, p_tail, body_m, skip_ratio in [(0.3, 0.1, -0.5, 0.2), (0.45, 0.2, 0.3, 0.05),
                                               (0.1, 0.5, 0.0, 0.5)]:
        one = _Law(*(np.array([v]) for v in (p_skip, p_tail, body_m, skip_ratio)))
        many = _Law(*(np.full(200_000, v) for v in (p_skip, p_tail, body_m, skip_ratio)))
        draws = _draw_ratio(config, many, np.random.default_rng(0))
        median, mean = oracle_ratio(config, one)
        assert median[0] == pytest.approx(np.median(draws), rel=0.01)
        assert mean[0] == pytest.approx(draws.mean(), rel=0.02)


def test_rewatch_writes_kuairec_files_with_skips_body_and_tail(tmp_path: Path):
    raw = tmp_path / "raw"
    summary = generate_rewatch(raw, RewatchConfig.preset("tiny"))
    big = pd.read_csv(raw / BIG)
    assert list(big.columns)[:4] == ["user_id", "video_id", "play_duration", "video_duration"]
    ratio = big["watch_ratio"].to_numpy()
    seconds = big["play_duration"].to_numpy() / 1000
    assert 0.05 < (seconds <= 1.5).mean() < 0.4  # the quick-skip mass
    assert 0.01 < (ratio > 2).mean() < 0.15 and ratio.max() > 5  # the re-watch tail
    assert summary["rows"]["small_matrix"] == len(pd.read_csv(raw / SMALL))
    assert (raw / ORACLE_FILE).is_file()
    ingest_kuairec(raw, tmp_path / "processed", IngestConfig())
    test = read_split(tmp_path / "processed", "test")
    y = test["label"].to_numpy()  # seconds
    assert _mae(y, test["oracle_median"].to_numpy()) < 0.9 * _mae(y, np.median(y))


def test_presets_reject_unknown_names_and_fields():
    with pytest.raises(DataSpecError, match="unknown preset"):
        CompletionConfig.preset("huge")
    with pytest.raises(DataSpecError, match="n_row"):
        SessionMsConfig.preset("tiny", n_row=5)


def test_spec_refuses_an_oracle_that_is_a_feature(tmp_path: Path):
    generate_session_ms(tmp_path / "s", SessionMsConfig.preset("tiny"))
    spec = yaml.safe_load((tmp_path / "s" / SPEC_FILE).read_text())
    spec["oracle"] = "platform"
    (tmp_path / "s" / SPEC_FILE).write_text(yaml.safe_dump(spec))
    with pytest.raises(DataSpecError, match="oracle column 'platform'"):
        build_tabular(tmp_path / "s" / SPEC_FILE, tmp_path / "p")

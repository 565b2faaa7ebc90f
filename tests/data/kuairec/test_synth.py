from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grmodel.data.io import DataSpecError
from grmodel.data.kuairec.schema import ONEHOT_LEVELS
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec, law, matrices, ratio_marginals, world

MATRIX_HEADER = ("user_id,video_id,play_duration,video_duration,time,date,timestamp,"
                 "watch_ratio")


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_writes_the_kuairec_files_with_their_quirks(tiny_raw: Path) -> None:
    names = {p.name for p in tiny_raw.iterdir()}
    assert names == {"big_matrix.csv", "small_matrix.csv", "user_features.csv",
                     "item_categories.csv", "oracle.csv", "synth.json"}
    for name in ("big_matrix.csv", "small_matrix.csv"):
        assert (tiny_raw / name).read_text().splitlines()[0] == MATRIX_HEADER
    big = pd.read_csv(tiny_raw / "big_matrix.csv")
    small = pd.read_csv(tiny_raw / "small_matrix.csv")
    config = SynthConfig.preset("tiny")
    assert len(big) == config.big_rows
    # Exact duplicate rows (re-watches logged twice), as in the real big matrix.
    assert big.duplicated().sum() == round(config.big_rows * config.duplicate_share)
    # Small matrix: nearly every cell of a user x video grid, some rows without a time, so
    # pandas reads `date` as float.
    assert small.groupby("user_id").video_id.nunique().max() <= config.small_items
    assert len(small) > 0.98 * config.small_users * config.small_items
    assert small.timestamp.isna().sum() > 0 and small.date.dtype == np.float64
    assert small.time.isna().equals(small.timestamp.isna())
    # Durations in whole ms; watch_ratio computed from them as the real file does.
    for frame in (big, small):
        assert frame.video_duration.dtype == np.int64 and frame.play_duration.min() >= 0
        np.testing.assert_allclose(frame.watch_ratio, frame.play_duration / frame.video_duration)
        assert (frame.watch_ratio == 0).any()
    # Users keep at least min_user_rows rows (40 in tiny; KuaiRec's 100 in the other presets).
    assert big.groupby("user_id").size().min() >= config.min_user_rows
    # Local (UTC+8) time strings agree with the Unix timestamps.
    timed = small.dropna(subset=["timestamp"]).head(50)
    local = pd.to_datetime(timed.time) - pd.Timedelta(hours=8)
    seconds = (local - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)
    np.testing.assert_allclose(seconds, timed.timestamp, atol=1e-3)
    assert (timed.date == pd.to_datetime(timed.time).dt.strftime("%Y%m%d").astype(int)).all()


def test_side_files_match_the_real_schema(tiny_raw: Path) -> None:
    users = pd.read_csv(tiny_raw / "user_features.csv")
    assert len(users.columns) == 31 and users.columns[0] == "user_id"
    assert set(users.user_active_degree) <= {"full_active", "high_active", "middle_active",
                                             "UNKNOWN"}
    for k, levels in enumerate(ONEHOT_LEVELS):
        values = users[f"onehot_feat{k}"].dropna()
        assert values.between(0, levels - 1).all()
    tags = pd.read_csv(tiny_raw / "item_categories.csv")
    assert tags.feat.str.fullmatch(r"\[\d+(, \d+){0,3}\]").all()


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    start = time.process_time()  # CPU time: other work on the machine does not inflate it
    generate_kuairec(tmp_path / "a", SynthConfig.preset("tiny", seed=7))
    assert time.process_time() - start < 2.0  # the tiny preset is for tests
    generate_kuairec(tmp_path / "b", SynthConfig.preset("tiny", seed=7))
    generate_kuairec(tmp_path / "c", SynthConfig.preset("tiny", seed=8))
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert _digests(tmp_path / "a")["big_matrix.csv"] != _digests(tmp_path / "c")["big_matrix.csv"]
    record = json.loads((tmp_path / "a" / "synth.json").read_text())
    assert record["config"]["seed"] == 7 and record["config"]["preset_name"] == "tiny"
    assert record["sha256"]["big_matrix.csv"] == _digests(tmp_path / "a")["big_matrix.csv"]


def test_default_preset_marginals_are_near_kuairec() -> None:
    """docs/kuairec.md: big-matrix watch ratio median 0.7235, p99 4.79, 0.92% above 5."""
    config = SynthConfig.preset("default")
    rngs = world.random_streams(config.seed)
    latent = world.build_world(config, rngs)
    ratio = matrices.big_matrix(config, latent, rngs["big"], rngs["big_labels"])["ratio"]
    figures = ratio_marginals(ratio)
    assert 0.65 < figures["median"] < 0.8
    assert 4.0 < figures["p99"] < 6.0
    assert 0.006 < figures["share_above_5"] < 0.014
    assert 0.005 < figures["share_zero"] < 0.03
    assert figures["max"] > 100  # a thin tail into the hundreds


def test_oracle_quantile_solves_the_cdf_exactly() -> None:
    config = SynthConfig.preset("tiny")
    q = np.array([1e-9, 1e-4, 0.01, 0.1, 0.3, 0.45, 0.5])
    s = law._standard_quantile(config, q)
    h, _ = law.standard_cdf(config, s)
    np.testing.assert_allclose(h, q, rtol=1e-10)


@pytest.mark.parametrize(("mu", "pi0"), [(-0.5, 0.01), (0.3, 0.2), (0.0, 0.47), (0.1, 0.6)])
def test_oracle_matches_monte_carlo(mu: float, pi0: float) -> None:
    config = SynthConfig.preset("tiny")
    n = 400_000
    draws = law.draw_ratio(config, np.full(n, mu), np.full(n, pi0),
                              np.random.default_rng(0))
    median, mean = law.oracle_ratio(config, np.array([mu]), np.array([pi0]))
    # The median: half the draws on each side (a few standard errors of a proportion).
    assert abs((draws <= median[0]).mean() - 0.5) < 0.005 or median[0] == 0
    if pi0 >= 0.5:
        assert median[0] == 0.0
    # The mean: the heavy tail makes Monte Carlo noisy; a loose bound suffices.
    assert abs(draws.mean() / mean[0] - 1) < 0.05


def test_oracle_file_covers_every_pair_and_rounds_like_the_data(tiny_raw: Path) -> None:
    oracle = pd.read_csv(tiny_raw / "oracle.csv")
    pairs = pd.concat([pd.read_csv(tiny_raw / name, usecols=["user_id", "video_id",
                                                              "video_duration"])
                       for name in ("big_matrix.csv", "small_matrix.csv")]).drop_duplicates()
    assert len(oracle) == len(pairs[["user_id", "video_id"]].drop_duplicates())
    joined = pairs.merge(oracle, on=["user_id", "video_id"], how="left", validate="many_to_one")
    assert joined.oracle_median_ratio.notna().all()
    play_ms = joined.oracle_median_ratio * joined.video_duration
    np.testing.assert_allclose(play_ms, np.rint(play_ms), atol=1e-6)
    assert (joined.oracle_mean_ratio > 0).all()


def test_real_side_files_drive_the_generator(real_side_dir: Path, tmp_path: Path) -> None:
    generate_kuairec(tmp_path / "raw", SynthConfig.preset("tiny", side_dir=str(real_side_dir)))
    for name in ("user_features.csv", "item_categories.csv"):
        assert (tmp_path / "raw" / name).read_bytes() == (real_side_dir / name).read_bytes()
    big = pd.read_csv(tmp_path / "raw" / "big_matrix.csv")
    assert big.user_id.max() < 50 and big.video_id.max() < 200


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        ("huge", {}, "unknown synth preset"),
        ("tiny", {"no_such_field": 1}, "unknown SynthConfig field"),
        ("tiny", {"min_user_rows": 1000}, "min_user_rows"),
        ("tiny", {"tail_alpha": 1.0}, "tail_alpha > 1"),
        ("tiny", {"first_day": "2020-13-01"}, "first_day"),
    ],
)
def test_bad_config_is_refused(preset: str, overrides: dict, message: str) -> None:
    with pytest.raises(DataSpecError, match=message):
        SynthConfig.preset(preset, **overrides)

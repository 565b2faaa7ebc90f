"""A zero-inflated, weak-signal duration table whose law drifts in time, split forward in time.

One row per visit over a year: the label ``visit_s`` is how long the visitor engaged, in
seconds with one decimal, and 0 for most visits. The features say little (each effect is
small), and the law moves through the year, so that the periods a model trains on (the first
nine months), is selected on (the tenth) and is tested on (the last two) differ:

* the visit is 0 with probability ``pi0 = sigmoid(c + effects + zero_drift (t - 1/2))``, the
  effects of user segment, device, content kind and hour block, ``t`` in [0, 1) the time of
  year, ``c`` calibrated so that about ``zero_share`` of all rows are 0 (fewer early in the
  year, more late);
* otherwise it lasts ``exp(mu + sigma Z)`` seconds, ``mu = log(positive_median) + effects -
  scale_drift (t - 1/2)`` (segment, region, content kind), rounded to 0.1 s (at least 0.1 s);
* ``account_age`` carries no signal.

Oracle: ``oracle_median`` = 0 when ``pi0 >= 1/2``, else ``exp(mu + sigma Phi^-1((1/2 - pi0) /
(1 - pi0)))`` rounded to 0.1 s: exact given the features *and the visit's date*, which no model
sees, so it is a floor below what a model of the features can reach under the drift. The
split is chronological on ``visit_ts`` (tabular spec ``split.kind: chronological``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grmodel.data.generators.common import (
    ORACLE_COLUMN,
    Presets,
    calibrated_intercept,
    config_record,
    label_summary,
    level_effects,
    normal_quantile,
    write_tabular_source,
    zipf_levels,
)

LABEL, TIMESTAMP = "visit_s", "visit_ts"
DEVICES = ("mobile", "desktop", "tv")
N_SEGMENTS, N_REGIONS, N_KINDS, N_HOURS, N_AGES = 8, 6, 10, 6, 5
YEAR_S = 360 * 86_400  # twelve 30-day months
# The forward split: nine months train, the tenth valid, the last two test.
VALID_FRACTION, TEST_FRACTION = 1 / 12, 2 / 12


@dataclass
class DriftingZerosConfig(Presets):
    preset_name: str = "default"
    seed: int = 2024
    n_rows: int = 72_000
    zero_share: float = 0.58
    zero_drift: float = 1.0  # log-odds of a zero, end of the year minus start
    positive_median: float = 30.0  # seconds, of a non-zero visit at average effects mid-year
    scale_drift: float = 0.5  # log seconds, start of the year minus end
    sigma: float = 1.1
    effect_sd: float = 0.3  # sd of the (weak) categorical effects


def drifting_frame(config: DriftingZerosConfig) -> pd.DataFrame:
    """The table: features, the visit time, the label and its oracle median."""
    rng = np.random.default_rng(config.seed)
    n, sd = config.n_rows, config.effect_sd
    segment = zipf_levels(rng, N_SEGMENTS, n, 0.6)
    device = zipf_levels(rng, len(DEVICES), n, 0.8)
    region = zipf_levels(rng, N_REGIONS, n)
    kind = zipf_levels(rng, N_KINDS, n, 0.5)
    hour = rng.integers(0, N_HOURS, n)
    age = rng.integers(0, N_AGES, n)
    ts = np.sort(rng.uniform(0, YEAR_S, n))
    t = ts / YEAR_S

    zero_logit = (level_effects(rng, N_SEGMENTS, sd)[segment]
                  + level_effects(rng, len(DEVICES), sd)[device]
                  + level_effects(rng, N_KINDS, sd)[kind]
                  + level_effects(rng, N_HOURS, sd)[hour]
                  + config.zero_drift * (t - 0.5))
    zero_logit = zero_logit + calibrated_intercept(zero_logit, config.zero_share)
    pi0 = 1.0 / (1.0 + np.exp(-zero_logit))
    mu = (np.log(config.positive_median) + level_effects(rng, N_SEGMENTS, sd)[segment]
          + level_effects(rng, N_REGIONS, sd)[region] + level_effects(rng, N_KINDS, sd)[kind]
          - config.scale_drift * (t - 0.5))

    label = draw_visits(rng, pi0, mu, config.sigma)
    oracle = oracle_median(pi0, mu, config.sigma)
    return pd.DataFrame({
        "user_segment": np.char.add("seg_", segment.astype(str)),
        "device": np.asarray(DEVICES)[device],
        "region": np.char.add("region_", region.astype(str)),
        "content_kind": np.char.add("kind_", kind.astype(str)),
        "hour_block": np.char.add("h", hour.astype(str)),
        "account_age": np.char.add("age_", age.astype(str)),
        TIMESTAMP: ts.round(0),
        LABEL: label,
        ORACLE_COLUMN: oracle,
    })


SPEC: dict[str, Any] = {
    "name": "drifting_zeros",
    "label": LABEL,
    "timestamp": TIMESTAMP,
    "user": {"categorical": ["user_segment", "device", "region", "account_age"]},
    "item": {"categorical": ["content_kind", "hour_block"]},
    "oracle": ORACLE_COLUMN,
    "split": {"kind": "chronological", "valid_fraction": VALID_FRACTION,
              "test_fraction": TEST_FRACTION},
}


def generate_drifting_zeros(out_dir: str | Path, config: DriftingZerosConfig) -> dict[str, Any]:
    """Write ``table.parquet``, ``spec.yaml`` and ``generator.json`` into ``out_dir``."""
    frame = drifting_frame(config)
    label, oracle = frame[LABEL].to_numpy(), frame[ORACLE_COLUMN].to_numpy()
    summary = label_summary(label, oracle)
    t = frame[TIMESTAMP].to_numpy() / YEAR_S
    periods = {"train": t < 1 - VALID_FRACTION - TEST_FRACTION,
               "valid": (t >= 1 - VALID_FRACTION - TEST_FRACTION) & (t < 1 - TEST_FRACTION),
               "test": t >= 1 - TEST_FRACTION}
    summary["share_zero_by_period"] = {k: float((label[rows] == 0).mean()) for k, rows in periods.items()}
    return write_tabular_source(out_dir, frame, SPEC, {
        **config_record("drifting_zeros", config), "label": {"unit": "s", **summary}})


def draw_visits(rng: np.random.Generator, pi0: np.ndarray, mu: np.ndarray, sigma: float
                ) -> np.ndarray:
    """Labels of the law: 0 with probability ``pi0``, else ``exp(mu + sigma Z)`` seconds."""
    zero = rng.random(len(pi0)) < pi0
    return np.where(zero, 0.0, _seconds(np.exp(mu + sigma * rng.normal(0, 1, len(pi0)))))


def oracle_median(pi0: np.ndarray, mu: np.ndarray, sigma: float) -> np.ndarray:
    """The law's median: 0 where ``pi0 >= 1/2``, else the lognormal quantile at ``(1/2 - pi0) /
    (1 - pi0)``, rounded as the labels are (monotone, so it stays the median)."""
    oracle = np.zeros(len(pi0))
    buys = pi0 < 0.5
    q = (0.5 - pi0[buys]) / (1.0 - pi0[buys])
    oracle[buys] = _seconds(np.exp(mu[buys] + sigma * normal_quantile(q)))
    return oracle


def _seconds(values: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(values, 1), 0.1)

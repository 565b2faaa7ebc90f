"""Labels in milliseconds, from 1e3 to 1e7: app-session lengths, and their tabular spec.

One row per session. The planted law, given the features a model sees: ``log ms = mu + sigma
Z`` with ``mu = log(median_ms) + platform + region + app_version + hour + tier x content``
effects (an interaction the models must learn) and ``sigma`` by network; the label is
``clip(round(exp(.)), 1e3, 1e7)`` whole milliseconds, so both bounds hold point masses.

Oracle: ``oracle_median = clip(round(exp(mu)), 1e3, 1e7)`` -- exact (rounding and clipping are
monotone, so they carry the lognormal's median exp(mu) to the label's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grmodel.data.generators.common import (
    ORACLE_COLUMN,
    Presets,
    config_record,
    label_summary,
    level_effects,
    write_tabular_source,
    zipf_levels,
)

LABEL = "session_ms"
LOW_MS, HIGH_MS = 1e3, 1e7
PLATFORMS = ("ios", "android", "web")
NETWORK_SIGMA = {"wifi": 0.9, "4g": 1.1, "3g": 1.4}
N_REGIONS, N_VERSIONS, N_HOURS, N_TIERS, N_CONTENT = 10, 15, 6, 4, 20


@dataclass
class SessionMsConfig(Presets):
    preset_name: str = "default"
    seed: int = 2024
    n_rows: int = 60_000
    median_ms: float = 60_000.0  # one minute at average effects
    effect_sd: float = 0.5


def session_frame(config: SessionMsConfig) -> pd.DataFrame:
    rng = np.random.default_rng(config.seed)
    n, sd = config.n_rows, config.effect_sd
    platform = zipf_levels(rng, len(PLATFORMS), n, 0.3)
    region = zipf_levels(rng, N_REGIONS, n)
    version = zipf_levels(rng, N_VERSIONS, n, 1.0)
    hour = rng.integers(0, N_HOURS, n)
    tier = zipf_levels(rng, N_TIERS, n, 0.7)
    content = zipf_levels(rng, N_CONTENT, n, 0.6)
    networks = np.asarray(list(NETWORK_SIGMA))
    network = rng.choice(len(networks), n, p=[0.6, 0.3, 0.1])

    mu = (math.log(config.median_ms) + level_effects(rng, len(PLATFORMS), sd)[platform]
          + level_effects(rng, N_REGIONS, sd)[region]
          + level_effects(rng, N_VERSIONS, sd)[version]
          + level_effects(rng, N_HOURS, sd)[hour]
          + rng.normal(0, 2 * sd, (N_TIERS, N_CONTENT))[tier, content])
    sigma = np.asarray(list(NETWORK_SIGMA.values()))[network]
    label = _whole_ms(np.exp(mu + sigma * rng.normal(0, 1, n)))
    return pd.DataFrame({
        "platform": np.asarray(PLATFORMS)[platform],
        "region": np.char.add("region_", region.astype(str)),
        "app_version": np.char.add("v", version.astype(str)),
        "network": networks[network],
        "hour_block": hour,
        "user_tier": np.char.add("tier_", tier.astype(str)),
        "content_type": np.char.add("content_", content.astype(str)),
        LABEL: label,
        ORACLE_COLUMN: _whole_ms(np.exp(mu)),
    })


SPEC: dict[str, Any] = {
    "name": "session_ms",
    "label": LABEL,
    "user": {"categorical": ["user_tier", "platform", "region", "app_version", "network",
                             "hour_block"]},
    "item": {"categorical": ["content_type"]},
    "oracle": ORACLE_COLUMN,
    "split": {"kind": "random", "valid_fraction": 0.1, "test_fraction": 0.2},
}


def generate_session_ms(out_dir: str | Path, config: SessionMsConfig) -> dict[str, Any]:
    """Write ``table.parquet``, ``spec.yaml`` and ``generator.json`` into ``out_dir``."""
    frame = session_frame(config)
    summary = label_summary(frame[LABEL].to_numpy(), frame[ORACLE_COLUMN].to_numpy())
    spec = {**SPEC, "split": {**SPEC["split"], "seed": config.seed}}
    return write_tabular_source(out_dir, frame, spec, {
        **config_record("session_ms", config), "label": {"unit": "ms", **summary}})


def _whole_ms(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), LOW_MS, HIGH_MS)

"""Completion fractions in [0, 1] with point masses at 0 (never started) and 1 (finished):
one row per (learner, lesson), and its tabular spec.

The planted law, given the features a model sees: the outcome is 0, partial or 1 with
softmax probabilities ``(p0, pp, p1)`` of logits ``(z0, 0, z1)``, each a sum of level effects
(learner level, device, referral, lesson category, lesson length, category x level); a
partial completion is ``sigmoid(mu + s Z)``, ``mu`` from other effects of the same fields,
rounded to 3 decimals (so a few partials also land on 0 or 1).

Oracle: the median is 0 when ``p0 >= 1/2``, 1 when ``p1 > 1/2``, else ``sigmoid(mu + s
Phi^-1((1/2 - p0) / pp))`` rounded to 3 decimals -- exact (rounding is monotone).
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
    config_record,
    label_summary,
    level_effects,
    normal_quantile,
    write_tabular_source,
    zipf_levels,
)

LABEL = "completion"
DEVICES = ("mobile", "desktop", "tablet")
N_LEVELS, N_REFERRALS, N_CATEGORIES, N_LENGTHS = 5, 4, 16, 6


@dataclass
class CompletionConfig(Presets):
    preset_name: str = "default"
    seed: int = 2024
    n_rows: int = 60_000
    zero_logit: float = -0.9  # base logits against a partial completion
    full_logit: float = -0.5
    partial_sd: float = 1.0  # s: spread of a partial completion on the logit scale
    effect_sd: float = 0.45


def completion_frame(config: CompletionConfig) -> pd.DataFrame:
    rng = np.random.default_rng(config.seed)
    n, sd = config.n_rows, config.effect_sd
    level = zipf_levels(rng, N_LEVELS, n, 0.5)
    device = zipf_levels(rng, len(DEVICES), n, 0.8)
    referral = zipf_levels(rng, N_REFERRALS, n)
    category = zipf_levels(rng, N_CATEGORIES, n, 0.6)
    length = rng.integers(0, N_LENGTHS, n)
    # Longer lessons: more never-finished and fewer finished (fixed, monotone).
    length_effect = np.linspace(-0.6, 0.6, N_LENGTHS)

    def logit() -> np.ndarray:
        return (level_effects(rng, N_LEVELS, sd)[level] + level_effects(rng, len(DEVICES), sd)[device]
                + level_effects(rng, N_REFERRALS, sd)[referral]
                + level_effects(rng, N_CATEGORIES, sd)[category]
                + rng.normal(0, sd, (N_CATEGORIES, N_LEVELS))[category, level])

    z0 = config.zero_logit + logit() + length_effect[length]
    z1 = config.full_logit + logit() - length_effect[length]
    mu = logit() - 0.5 * length_effect[length]
    weights = np.stack([np.exp(z0), np.ones(n), np.exp(z1)])
    p0, pp, _ = weights / weights.sum(0)  # zero, partial and full watch

    outcome = (rng.random(n)[None, :] > np.cumsum([p0, pp], axis=0)).sum(0)  # 0, 1 or 2
    partial = _fraction(_sigmoid(mu + config.partial_sd * rng.normal(0, 1, n)))
    label = np.select([outcome == 0, outcome == 1], [0.0, partial], 1.0)
    oracle = np.where(p0 >= 0.5, 0.0, 1.0)
    inside = (p0 < 0.5) & (p0 + pp >= 0.5)
    q = (0.5 - p0[inside]) / pp[inside]
    oracle[inside] = _fraction(_sigmoid(mu[inside] + config.partial_sd
                                        * normal_quantile(np.clip(q, 1e-12, 1 - 1e-12))))
    return pd.DataFrame({
        "learner_level": np.char.add("level_", level.astype(str)),
        "device": np.asarray(DEVICES)[device],
        "referral": np.char.add("ref_", referral.astype(str)),
        "lesson_category": np.char.add("cat_", category.astype(str)),
        "lesson_length": np.char.add("len_", length.astype(str)),
        LABEL: label,
        ORACLE_COLUMN: oracle,
    })


SPEC: dict[str, Any] = {
    "name": "completion",
    "label": LABEL,
    "user": {"categorical": ["learner_level", "device", "referral"]},
    "item": {"categorical": ["lesson_category", "lesson_length"]},
    "oracle": ORACLE_COLUMN,
    "split": {"kind": "random", "valid_fraction": 0.1, "test_fraction": 0.2},
}


def generate_completion(out_dir: str | Path, config: CompletionConfig) -> dict[str, Any]:
    """Write ``table.parquet``, ``spec.yaml`` and ``generator.json`` into ``out_dir``."""
    frame = completion_frame(config)
    summary = label_summary(frame[LABEL].to_numpy(), frame[ORACLE_COLUMN].to_numpy())
    summary["share_one"] = float((frame[LABEL] == 1).mean())
    spec = {**SPEC, "split": {**SPEC["split"], "seed": config.seed}}
    return write_tabular_source(out_dir, frame, spec, {
        **config_record("completion", config), "label": {"unit": "fraction", **summary}})


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _fraction(values: np.ndarray) -> np.ndarray:
    return np.round(values, 3)

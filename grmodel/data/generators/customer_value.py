"""A zero-inflated customer-value table (dollars with cents) and its tabular spec.

One row per customer: the label ``value_90d`` is what the customer spends in the next 90 days.
Features are purchase-history buckets (recency, frequency, monetary: R1-R5 / F1-F5 / M1-M5,
R1 the most recent, F5 / M5 the highest), a few categorical fields and an ``age`` that carries
no signal. The planted law, given the features a model sees:

* the customer buys nothing with probability ``pi0 = 1 - sigmoid(c + r[R] + f[F] + country
  + channel + loyalty + category)``, ``c`` calibrated so that about ``zero_share`` of rows are 0;
* otherwise spends ``exp(mu + sigma Z)`` dollars, ``mu = log(spend_median) + m[M] + 0.3 f[F]
  + country' + category' + payment``, ``sigma`` by channel (paid channels spread more),
  rounded to cents (at least $0.01).

Oracle: ``oracle_median`` = 0 when ``pi0 >= 1/2``, else ``exp(mu + sigma Phi^-1((1/2 - pi0) /
(1 - pi0)))`` rounded to cents -- exact, since rounding and the $0.01 floor are monotone.
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
    calibrated_intercept,
    config_record,
    label_summary,
    level_effects,
    normal_quantile,
    write_tabular_source,
    zipf_levels,
)

LABEL = "value_90d"
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "AU", "NL", "ES")
CHANNELS = ("organic", "paid_search", "social", "email", "referral")
CATEGORIES = ("apparel", "shoes", "beauty", "home", "garden", "toys", "books", "electronics",
              "sports", "grocery", "pets", "jewelry")
PAYMENTS = ("card", "paypal", "gift_card", "invoice")
# Fixed, monotone purchase-history effects (bucket 1..5).
RECENCY_EFFECT = (1.3, 0.6, 0.0, -0.8, -1.6)  # on the log-odds of buying
FREQUENCY_EFFECT = (-1.1, -0.4, 0.1, 0.6, 1.3)
MONETARY_EFFECT = (-0.9, -0.35, 0.0, 0.4, 0.95)  # on log spend
CHANNEL_SIGMA = (0.9, 1.25, 1.15, 0.85, 1.0)


@dataclass
class CustomerValueConfig(Presets):
    preset_name: str = "default"
    seed: int = 2024
    n_rows: int = 60_000
    zero_share: float = 0.7
    spend_median: float = 45.0  # dollars, of a buyer at average effects
    effect_sd: float = 0.35  # sd of the random categorical effects


def customer_frame(config: CustomerValueConfig) -> pd.DataFrame:
    """The table: features, the label and its oracle median."""
    rng = np.random.default_rng(config.seed)
    n = config.n_rows
    # A latent engagement makes recency and frequency agree, as they do in real histories.
    engagement = rng.normal(0, 1, n)
    recency = _quintile(-engagement + rng.normal(0, 0.8, n))
    frequency = _quintile(engagement + rng.normal(0, 0.8, n))
    monetary = _quintile(0.5 * engagement + rng.normal(0, 1, n))
    country = zipf_levels(rng, len(COUNTRIES), n)
    channel = zipf_levels(rng, len(CHANNELS), n, 0.5)
    category = zipf_levels(rng, len(CATEGORIES), n, 0.6)
    payment = zipf_levels(rng, len(PAYMENTS), n, 1.0)
    loyalty = rng.random(n) < 0.25

    sd = config.effect_sd
    buy_logit = (np.asarray(RECENCY_EFFECT)[recency] + np.asarray(FREQUENCY_EFFECT)[frequency]
                 + level_effects(rng, len(COUNTRIES), sd)[country]
                 + level_effects(rng, len(CHANNELS), sd)[channel]
                 + level_effects(rng, len(CATEGORIES), sd)[category] + 0.7 * loyalty)
    buy_logit += calibrated_intercept(buy_logit, 1.0 - config.zero_share)
    pi0 = 1.0 / (1.0 + np.exp(buy_logit))
    mu = (math.log(config.spend_median) + np.asarray(MONETARY_EFFECT)[monetary]
          + 0.3 * np.asarray(FREQUENCY_EFFECT)[frequency]
          + level_effects(rng, len(COUNTRIES), sd)[country]
          + level_effects(rng, len(CATEGORIES), sd)[category]
          + level_effects(rng, len(PAYMENTS), sd)[payment])
    sigma = np.asarray(CHANNEL_SIGMA)[channel]

    buys = rng.random(n) >= pi0
    value = np.where(buys, _dollars(np.exp(mu + sigma * rng.normal(0, 1, n))), 0.0)
    q = (0.5 - pi0) / (1.0 - pi0)
    oracle = np.zeros(n)
    positive = q > 0
    oracle[positive] = _dollars(np.exp(mu[positive] + sigma[positive]
                                       * normal_quantile(q[positive])))
    return pd.DataFrame({
        "customer_id": [f"C{k:07d}" for k in range(n)],
        "country": np.asarray(COUNTRIES)[country],
        "channel": np.asarray(CHANNELS)[channel],
        "recency_bucket": np.char.add("R", (recency + 1).astype(str)),
        "frequency_bucket": np.char.add("F", (frequency + 1).astype(str)),
        "monetary_bucket": np.char.add("M", (monetary + 1).astype(str)),
        "loyalty_member": np.where(loyalty, "yes", "no"),
        "age": np.clip(np.rint(rng.normal(41, 13, n)), 18, 90),  # no effect on the label
        "first_category": np.asarray(CATEGORIES)[category],
        "payment_method": np.asarray(PAYMENTS)[payment],
        LABEL: value,
        ORACLE_COLUMN: oracle,
    })


SPEC: dict[str, Any] = {
    "name": "customer_value",
    "label": LABEL,
    "user": {"categorical": ["country", "channel", "recency_bucket", "frequency_bucket",
                             "monetary_bucket", "loyalty_member"],
             "numeric": {"age": 8}},
    "item": {"categorical": ["first_category", "payment_method"]},
    "oracle": ORACLE_COLUMN,
    "split": {"kind": "random", "valid_fraction": 0.1, "test_fraction": 0.2},
}


def generate_customer_value(out_dir: str | Path, config: CustomerValueConfig
                            ) -> dict[str, Any]:
    """Write ``table.parquet``, ``spec.yaml`` and ``generator.json`` into ``out_dir``."""
    frame = customer_frame(config)
    summary = label_summary(frame[LABEL].to_numpy(), frame[ORACLE_COLUMN].to_numpy())
    spec = {**SPEC, "split": {**SPEC["split"], "seed": config.seed}}
    return write_tabular_source(out_dir, frame, spec, {
        **config_record("customer_value", config), "label": {"unit": "dollars", **summary}})


def _quintile(score: np.ndarray) -> np.ndarray:
    """0..4 by the score's quintiles."""
    return np.searchsorted(np.quantile(score, [0.2, 0.4, 0.6, 0.8]), score)


def _dollars(values: np.ndarray) -> np.ndarray:
    return np.maximum(np.round(values, 2), 0.01)

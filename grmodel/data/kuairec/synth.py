"""A KuaiRec-shaped generator with a planted label process and its exact oracle.

``generate_kuairec`` writes the four KuaiRec 2.0 files (``big_matrix.csv``,
``small_matrix.csv``, ``user_features.csv``, ``item_categories.csv``) with the real columns,
types and quirks (kuairec.md), so the real ingest path is the one exercised, plus
``oracle.csv`` and ``synth.json``.

The planted process, per (user u, video i) pair:

* ``mu = base + user bias (profile fields + noise) + item bias (tags + noise)
  + taste_weight * affinity(u's taste, i's tags) + duration_weight * z(log duration)
  + user_activity_weight * z(log rows of u) + item_popularity_weight * z(log popularity)``;
* with probability ``pi0 = sigmoid(zero_logit + zero_taste_weight * affinity
  + zero_activity_weight * z(log rows of u))`` the watch ratio is 0;
* otherwise the ratio is ``exp(mu) * X`` with X from a fixed mixture: with probability
  ``tail_share`` a re-watch tail ``tail_start * P``, P Pareto(tail_alpha) truncated to
  [1, tail_max] (ratios into the hundreds), else Weibull ``E ** (1 / weibull_shape)``,
  ``E ~ Exp(1)``, shrunk by ``skip_scale`` with probability ``skip_share`` (quick swipes);
* ``play_duration = round(ratio * video_duration)`` ms, ``watch_ratio = play / duration``.

Given (u, i) -- which the models see as ``user_id`` and ``video_id`` -- the ratio's law is
known exactly: ``P(ratio <= x) = pi0 + (1 - pi0) H(log x - mu)`` with one fixed, closed-form
``H`` (``standard_cdf``). The oracle median solves ``H(s) = (0.5 - pi0) / (1 - pi0)`` to
machine precision (interpolation on a fine grid, then Newton steps on the exact ``H``; 0
when ``pi0 >= 0.5``), then goes through the same whole-millisecond rounding as the data
(rounding is monotone, so it maps a median to a median). The oracle mean is ``(1 - pi0)
exp(mu) E[X]`` in closed form (the ms rounding moves it by far less than a millisecond).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from grmodel.atomic import atomic_directory, write_json_atomic
from grmodel.data.io import DataSpecError, sha256_file
from grmodel.data.kuairec.ingest import read_item_tags, read_user_features
from grmodel.data.kuairec.schema import (
    BIG,
    GENERATOR,
    ITEM_FILE,
    ONEHOT_LEVELS,
    ORACLE_FILE,
    SMALL,
    SYNTH_FILE,
    USER_FILE,
)

log = logging.getLogger(__name__)

# Profile fields that shift a user's bias in the planted process (so they carry signal).
BIAS_PROFILE_FIELDS = ("user_active_degree", "onehot_feat1", "onehot_feat4", "onehot_feat9")
# The profile field whose level sets a user's taste segment.
TASTE_PROFILE_FIELD = "onehot_feat2"
UTC_PLUS_8_MS = 8 * 3600 * 1000
DAY_MS = 86_400_000


@dataclass
class SynthConfig:
    """Every size and every parameter of the planted process; ``synth.json`` records it."""

    preset_name: str = "default"
    seed: int = 2024
    # Directory with the real user_features.csv / item_categories.csv to use instead of
    # generated ones (their first n_users users and n_items videos are used).
    side_dir: str | None = None
    # Sizes.
    n_users: int = 800
    n_items: int = 1500
    big_rows: int = 120_000  # including the exact duplicate rows
    min_user_rows: int = 100  # big-matrix rows per user, before duplicates
    user_rows_log_sd: float = 0.7
    small_users: int = 150
    small_items: int = 200
    small_density: float = 0.996
    duplicate_share: float = 0.0773  # big matrix: 968k exact duplicates of 12.53M rows
    small_nan_time_share: float = 0.039  # small matrix: 182k of 4.68M rows lack a time
    n_tags: int = 31
    first_day: str = "2020-07-05"
    last_day: str = "2020-09-05"
    # Videos.
    duration_median_ms: float = 9636.0
    duration_log_sd: float = 0.9
    min_duration_ms: int = 140
    max_duration_ms: int = 315_072
    popularity_log_sd: float = 1.2
    # Planted label process (calibrated to the big-matrix marginals of kuairec.md).
    base_log_ratio: float = 0.02
    weibull_shape: float = 2.74
    user_bias_sd: float = 0.24
    profile_effect_sd: float = 0.12
    item_bias_sd: float = 0.24
    tag_effect_sd: float = 0.14
    taste_weight: float = 0.29
    taste_profile_share: float = 0.5
    duration_weight: float = -0.2
    user_activity_weight: float = 0.08
    item_popularity_weight: float = 0.08
    zero_logit: float = -4.6
    zero_taste_weight: float = -0.8
    zero_activity_weight: float = -0.3
    skip_share: float = 0.159
    skip_scale: float = 0.036
    tail_share: float = 0.0124
    tail_start: float = 3.52
    tail_alpha: float = 1.91
    tail_max: float = 60.0  # the Pareto factor's upper bound (KuaiRec's max ratio is 573)
    # Rows per CSV write batch (bounds memory at the full size).
    chunk_rows: int = 1_000_000

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SynthConfig:
        """A named size (``tiny``, ``default``, ``full``) with field overrides."""
        if name not in PRESETS:
            raise DataSpecError(f"unknown synth preset {name!r}; expected one of {list(PRESETS)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise DataSpecError(f"unknown SynthConfig field(s) {unknown}")
        config = cls(preset_name=name, **{**PRESETS[name], **overrides})
        config.validate()
        return config

    def validate(self) -> None:
        def need(ok: bool, rule: str) -> None:
            if not ok:
                raise DataSpecError(f"SynthConfig: {rule}")

        need(self.n_users >= 2 and self.n_items >= 2, "n_users and n_items >= 2")
        need(0 < self.small_users <= self.n_users, "0 < small_users <= n_users")
        need(0 < self.small_items <= self.n_items, "0 < small_items <= n_items")
        need(0 < self.small_density <= 1, "0 < small_density <= 1")
        need(0 <= self.duplicate_share < 0.5, "0 <= duplicate_share < 0.5")
        need(0 <= self.small_nan_time_share < 1, "0 <= small_nan_time_share < 1")
        need(self.min_user_rows >= 1, "min_user_rows >= 1")
        base_rows = self.big_rows - round(self.big_rows * self.duplicate_share)
        need(
            base_rows >= self.n_users * self.min_user_rows,
            f"big_rows without duplicates ({base_rows}) >= n_users * min_user_rows"
            f" ({self.n_users * self.min_user_rows})",
        )
        need(self.n_tags >= 4, "n_tags >= 4")
        need(self.weibull_shape > 0, "weibull_shape > 0")
        need(0 <= self.skip_share < 1 and 0 < self.skip_scale <= 1,
             "0 <= skip_share < 1 and 0 < skip_scale <= 1")
        need(0 <= self.tail_share < 1 and self.tail_start > 0, "0 <= tail_share < 1, tail_start > 0")
        need(self.tail_alpha > 1 and self.tail_max > 1, "tail_alpha > 1 and tail_max > 1")
        need(self.chunk_rows >= 1000, "chunk_rows >= 1000")
        try:
            first, last = dt.date.fromisoformat(self.first_day), dt.date.fromisoformat(self.last_day)
        except ValueError as exc:
            raise DataSpecError(f"SynthConfig: first_day/last_day: {exc}") from None
        need(first <= last, "first_day <= last_day")


PRESETS: dict[str, dict[str, Any]] = {
    # About 10k rows for tests; users get >= 40 rows here, not KuaiRec's 100.
    "tiny": dict(n_users=50, n_items=200, big_rows=8_000, min_user_rows=40,
                 small_users=20, small_items=100, chunk_rows=4_000),
    # The main job: sized so that ingest plus training three models fits in minutes on 2 cores.
    "default": dict(),
    # KuaiRec 2.0 sizes (kuairec.md).
    "full": dict(n_users=7_176, n_items=10_728, big_rows=12_530_806, small_users=1_411,
                 small_items=3_327, user_rows_log_sd=0.75),
}


@dataclass
class _World:
    """Latent user and item tables of the planted process (index = position, not raw id)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    user_effect: np.ndarray  # user terms of mu
    user_zero_effect: np.ndarray  # user terms of logit(pi0)
    taste: np.ndarray  # [n_users, n_tags]
    shared_taste: np.ndarray  # [n_users, n_tags]: the part of taste the user's segment sets
    user_rows: np.ndarray  # big-matrix rows per user, before duplicates
    item_tags: np.ndarray  # [n_items, 4], -1 = no tag
    item_effect: np.ndarray  # item terms of mu
    duration_ms: np.ndarray
    popularity: np.ndarray  # sums to 1
    user_features: pd.DataFrame | None  # generated table, None when read from side_dir


def generate_kuairec(out_dir: str | Path, config: SynthConfig) -> dict[str, Any]:
    """Write a KuaiRec-shaped raw directory (atomically) and return a summary."""
    config.validate()
    rngs = random_streams(config.seed)
    world = build_world(config, rngs)
    with atomic_directory(out_dir, mark=False) as tmp:
        big = big_matrix(config, world, rngs["big"], rngs["big_labels"])
        small = small_matrix(config, world, rngs["small"], rngs["small_labels"])
        _write_matrix(tmp / BIG, big, world, config.chunk_rows)
        _write_matrix(tmp / SMALL, small, world, config.chunk_rows)
        _write_side_files(tmp, config, world)
        oracle_rows = _write_oracle(tmp / ORACLE_FILE, config, world, big, small)
        summary = {
            "config": dataclasses.asdict(config),
            "rows": {"big_matrix": len(big["user"]), "small_matrix": len(small["user"]),
                     "oracle": oracle_rows},
            "watch_ratio": {"big_matrix": ratio_marginals(big["ratio"]),
                            "small_matrix": ratio_marginals(small["ratio"])},
        }
        files = sorted(p.name for p in tmp.iterdir())
        summary["sha256"] = {name: sha256_file(tmp / name) for name in files}
        write_json_atomic(tmp / SYNTH_FILE, {"generator": GENERATOR,
                                      **summary})
    log.info("generated %s: %s", out_dir, summary["rows"])
    return summary


def ratio_marginals(ratio: np.ndarray) -> dict[str, float]:
    """The watch-ratio figures kuairec.md quotes, for comparing with the real data."""
    q = np.quantile(ratio, [0.25, 0.5, 0.75, 0.99])
    return {
        "median": float(q[1]), "mean": float(ratio.mean()), "p25": float(q[0]),
        "p75": float(q[2]), "p99": float(q[3]), "max": float(ratio.max()),
        "share_above_5": float((ratio > 5).mean()), "share_zero": float((ratio == 0).mean()),
    }


# ---------------------------------------------------------------------------- latent world


STREAMS = ("profiles", "users", "rows", "items", "big", "big_labels", "small", "small_labels")


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per concern, so that changing one size leaves the other
    draws unchanged."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}


def build_world(config: SynthConfig, rngs: dict[str, np.random.Generator]) -> _World:
    """Latent users and videos; random effects are centred on their row-weighted means, so
    the marginals stay on target for any seed and size."""
    if config.side_dir:
        profile, item_ids, item_tags = _read_side_files(Path(config.side_dir), config)
        user_features = None
    else:
        user_features = _generate_user_features(config, rngs["profiles"])
        profile = user_features
        item_ids = np.arange(config.n_items, dtype=np.int64)
        item_tags = _generate_item_tags(config, rngs["profiles"])
    user_ids = profile["user_id"].to_numpy(dtype=np.int64)

    rng = rngs["users"]
    user_bias = rng.normal(0, config.user_bias_sd, config.n_users)
    for name in BIAS_PROFILE_FIELDS:
        user_bias += _level_effects(rng, profile[name].to_numpy(), config.profile_effect_sd)
    segment_taste = rng.normal(0, 1, (_n_levels(profile[TASTE_PROFILE_FIELD]), config.n_tags))
    segment = pd.factorize(profile[TASTE_PROFILE_FIELD], sort=True, use_na_sentinel=False)[0]
    share = config.taste_profile_share
    shared_taste = math.sqrt(share) * segment_taste[segment]
    taste = shared_taste + math.sqrt(1 - share) * rng.normal(0, 1, (config.n_users, config.n_tags))
    user_rows = _allocate(config, rngs["rows"])
    activity = _standardised(np.log(user_rows))
    user_effect = user_bias + config.user_activity_weight * activity
    user_zero_effect = config.zero_activity_weight * activity

    rng = rngs["items"]
    tag_effect = rng.normal(0, config.tag_effect_sd, config.n_tags)
    has_tag = item_tags >= 0
    item_bias = rng.normal(0, config.item_bias_sd, config.n_items) + (
        np.where(has_tag, tag_effect[np.maximum(item_tags, 0)], 0).sum(1)
        / np.maximum(has_tag.sum(1), 1)
    )
    log_duration = rng.normal(math.log(config.duration_median_ms), config.duration_log_sd,
                              config.n_items)
    duration_ms = np.clip(np.rint(np.exp(log_duration)), config.min_duration_ms,
                          config.max_duration_ms).astype(np.int64)
    log_popularity = rng.normal(0, config.popularity_log_sd, config.n_items)
    popularity = np.exp(log_popularity) / np.exp(log_popularity).sum()
    item_effect = (item_bias + config.duration_weight * _standardised(np.log(duration_ms))
                   + config.item_popularity_weight * _standardised(log_popularity))
    # Centre each side on its big-matrix row weights: the marginals then depend on the
    # process parameters, not on the seed or the sizes.
    user_effect -= np.average(user_effect, weights=user_rows)
    user_zero_effect -= np.average(user_zero_effect, weights=user_rows)
    item_effect -= np.average(item_effect, weights=popularity)
    return _World(user_ids, item_ids, user_effect, user_zero_effect, taste, shared_taste,
                  user_rows, item_tags, item_effect, duration_ms, popularity, user_features)


def _standardised(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / max(float(values.std()), 1e-9)


def _n_levels(column: pd.Series) -> int:
    return len(pd.unique(column))


def _level_effects(rng: np.random.Generator, values: np.ndarray, sd: float) -> np.ndarray:
    """A random effect per distinct value (sorted, so it is deterministic); missing -> 0."""
    codes, levels = pd.factorize(pd.Series(values), sort=True)
    effects = rng.normal(0, sd, len(levels) + 1)
    effects[-1] = 0.0  # code -1 (missing) indexes the last slot
    return effects[codes]


def _allocate(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Rows per user: at least min_user_rows, the rest in proportion to log-normal weights,
    summing exactly to the big matrix's rows before duplicates."""
    weights = np.exp(rng.normal(0, config.user_rows_log_sd, config.n_users))
    total = config.big_rows - round(config.big_rows * config.duplicate_share)
    spare = total - config.n_users * config.min_user_rows
    extra = np.floor(spare * weights / weights.sum()).astype(np.int64)
    leftover = spare - int(extra.sum())
    extra += np.bincount(rng.choice(config.n_users, leftover, p=weights / weights.sum()),
                         minlength=config.n_users)
    return config.min_user_rows + extra


def _read_side_files(side_dir: Path, config: SynthConfig) -> tuple[pd.DataFrame, np.ndarray,
                                                                     np.ndarray]:
    fields = (*BIAS_PROFILE_FIELDS, TASTE_PROFILE_FIELD)
    users = read_user_features(side_dir / USER_FILE, fields)
    users = users.sort_values("user_id", kind="stable").reset_index(drop=True)
    item_ids, item_tags = read_item_tags(side_dir / ITEM_FILE)
    order = np.argsort(item_ids, kind="stable")
    if len(users) < config.n_users or len(item_ids) < config.n_items:
        raise DataSpecError(
            f"SynthConfig: side files in {side_dir} hold {len(users)} users and"
            f" {len(item_ids)} videos, fewer than n_users={config.n_users} /"
            f" n_items={config.n_items}"
        )
    keep = order[: config.n_items]
    tags = item_tags[keep]
    if tags.max() >= config.n_tags:
        raise DataSpecError(f"SynthConfig: n_tags={config.n_tags} but the side file has tag"
                            f" {int(tags.max())}")
    return users.iloc[: config.n_users].reset_index(drop=True), item_ids[keep], tags


def _zipf_choice(rng: np.random.Generator, levels: int, size: int, exponent: float = 1.1
                 ) -> np.ndarray:
    """Category values 0..levels-1 with skewed (Zipf-like) frequencies in a random order."""
    p = 1.0 / np.arange(1, levels + 1) ** exponent
    return rng.permutation(levels)[rng.choice(levels, size, p=p / p.sum())]


def _generate_user_features(config: SynthConfig, rng: np.random.Generator) -> pd.DataFrame:
    """A user_features.csv with the real 31 columns, value ranges, NaNs and UNKNOWNs."""
    n = config.n_users
    degree = rng.choice(["full_active", "high_active", "UNKNOWN", "middle_active"], n,
                        p=[0.849, 0.131, 0.016, 0.004])
    table: dict[str, Any] = {
        "user_id": np.arange(n, dtype=np.int64),
        "user_active_degree": degree,
        "is_lowactive_period": (rng.random(n) < 0.001).astype(np.int64),
        "is_live_streamer": (rng.random(n) < 0.007).astype(np.int64),
        "is_video_author": (rng.random(n) < 0.17).astype(np.int64),
    }
    ranges = {
        "follow_user_num": (3.5, 1.6, [0, 10, 50, 100, 150, 250, 500],
                            ["0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]",
                             "(250,500]", "500+"]),
        "fans_user_num": (0.8, 1.5, [0, 9, 99, 999, 4999, 9999],
                          ["0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)",
                           "[1w,10w)"]),
        "friend_user_num": (-0.5, 1.5, [0, 4, 29, 59, 119, 249],
                            ["0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)",
                             "250+"]),
    }
    for name, (log_mean, log_sd, upper, labels) in ranges.items():
        counts = np.floor(np.exp(rng.normal(log_mean, log_sd, n))).astype(np.int64)
        counts[rng.random(n) < 0.3] = 0
        table[name] = counts
        table[f"{name}_range"] = np.asarray(labels, dtype=object)[
            np.searchsorted(np.asarray(upper), counts, side="left")]
    days = np.clip(np.rint(np.exp(rng.normal(5.4, 0.7, n))), 15, 2245).astype(np.int64)
    table["register_days"] = days
    table["register_days_range"] = np.asarray(
        ["15-30", "31-60", "61-90", "91-180", "181-365", "366-730", "730+"], dtype=object
    )[np.searchsorted(np.array([30, 60, 90, 180, 365, 730]), days, side="left")]
    # onehot_feat4 lacks about 2.8% of users, onehot_feat12-17 about 1% (the same users).
    gap4 = rng.random(n) < 0.028
    gap12 = rng.random(n) < 0.0104
    for k, levels in enumerate(ONEHOT_LEVELS):
        values = _zipf_choice(rng, levels, n).astype(np.float64)
        if k == 4:
            values[gap4] = np.nan
        elif k >= 12:
            values[gap12] = np.nan
        table[f"onehot_feat{k}"] = values
    return pd.DataFrame(table)


def _generate_item_tags(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """1-4 distinct tags per video, in KuaiRec's proportions (8970 / 1562 / 185 / 11)."""
    n = config.n_items
    counts = rng.choice([1, 2, 3, 4], n, p=np.array([8970, 1562, 185, 11]) / 10728)
    p = 1.0 / np.arange(1, config.n_tags + 1) ** 0.9
    ranked = rng.permutation(config.n_tags)
    # Gumbel top-k: distinct tags per video drawn by weight, all videos at once.
    keys = np.log(p)[None, :] - np.log(rng.standard_exponential((n, config.n_tags)))
    top = ranked[np.argsort(-keys, axis=1)[:, :4]]
    return np.where(np.arange(4)[None, :] < counts[:, None], top, -1)


# ------------------------------------------------------------------------ labels and oracle


def pair_params(config: SynthConfig, world: _World, user: np.ndarray, item: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(mu, pi0) of the planted law for each (user position, item position) pair."""
    tags = world.item_tags[item]
    has = tags >= 0
    affinity = np.zeros(len(user))
    for k in range(tags.shape[1]):
        affinity += np.where(has[:, k], world.taste[user, np.maximum(tags[:, k], 0)], 0.0)
    affinity /= np.maximum(has.sum(1), 1)
    mu = (config.base_log_ratio + world.user_effect[user] + world.item_effect[item]
          + config.taste_weight * affinity)
    logit = config.zero_logit + world.user_zero_effect[user] + config.zero_taste_weight * affinity
    return mu, 1.0 / (1.0 + np.exp(-logit))


def _draw_ratio(config: SynthConfig, mu: np.ndarray, pi0: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    n = len(mu)
    body = rng.standard_exponential(n) ** (1.0 / config.weibull_shape)
    body = np.where(rng.random(n) < config.skip_share, config.skip_scale * body, body)
    # Inverse CDF of the truncated Pareto factor.
    kept = 1.0 - config.tail_max ** -config.tail_alpha
    tail = config.tail_start * (1.0 - rng.random(n) * kept) ** (-1.0 / config.tail_alpha)
    is_tail = rng.random(n) < config.tail_share
    is_zero = rng.random(n) < pi0
    return np.where(is_zero, 0.0, np.exp(mu) * np.where(is_tail, tail, body))


def standard_cdf(config: SynthConfig, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H(s) = P(X <= exp(s)) of the non-zero part at mu = 0, and its derivative dH/ds."""
    k, w, rho, alpha = (config.weibull_shape, config.skip_share, config.tail_share,
                        config.tail_alpha)

    def weibull(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        power = np.exp(k * x)
        return -np.expm1(-power), k * power * np.exp(-power)

    main, d_main = weibull(s)
    skip, d_skip = weibull(s - math.log(config.skip_scale))
    kept = 1.0 - config.tail_max ** -alpha
    log_max = math.log(config.tail_max)
    beyond = np.clip(s - math.log(config.tail_start), 0.0, log_max)
    tail = -np.expm1(-alpha * beyond) / kept
    d_tail = np.where((beyond > 0) & (beyond < log_max), alpha * np.exp(-alpha * beyond) / kept,
                      0.0)
    h = (1 - rho) * (w * skip + (1 - w) * main) + rho * tail
    dh = (1 - rho) * (w * d_skip + (1 - w) * d_main) + rho * d_tail
    return h, dh


def _standard_quantile(config: SynthConfig, q: np.ndarray) -> np.ndarray:
    """s with H(s) = q for 0 < q < 1: a fine grid's interpolation, then Newton steps on
    log H (linear in s in the far left tail, so the steps converge there too)."""
    k = config.weibull_shape
    # Below `low`, H(s) < 1e-14; above `high`, 1 - H(s) is negligible.
    scale = (1 - config.skip_share) + config.skip_share * config.skip_scale ** -k
    low = (math.log(1e-14) - math.log(scale)) / k
    high = max(math.log(config.tail_start * config.tail_max), 0.0) + 40.0 / k
    grid = np.linspace(low, high, 1 << 18)
    s = np.interp(q, standard_cdf(config, grid)[0], grid)
    for _ in range(2):  # the grid is within ~1e-8; Newton doubles the digits per step
        h, dh = standard_cdf(config, s)
        step = np.where(dh > 0, h * (np.log(np.maximum(h, 1e-300)) - np.log(q))
                        / np.where(dh > 0, dh, 1.0), 0.0)
        s = s - step
    return s


def mixture_mean(config: SynthConfig) -> float:
    """E[X] of the non-zero part at mu = 0."""
    weibull = math.gamma(1.0 + 1.0 / config.weibull_shape)
    body = (1 - config.skip_share) + config.skip_share * config.skip_scale
    alpha, top = config.tail_alpha, config.tail_max
    tail = (config.tail_start * alpha / (alpha - 1.0) * (1.0 - top ** (1.0 - alpha))
            / (1.0 - top**-alpha))
    return (1 - config.tail_share) * body * weibull + config.tail_share * tail


def oracle_ratio(config: SynthConfig, mu: np.ndarray, pi0: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Exact conditional (median, mean) of the continuous watch ratio given (mu, pi0)."""
    q = (0.5 - pi0) / (1.0 - pi0)
    median = np.zeros(len(mu))
    positive = q > 0
    median[positive] = np.exp(mu[positive] + _standard_quantile(config, q[positive]))
    return median, (1.0 - pi0) * np.exp(mu) * mixture_mean(config)


# ------------------------------------------------------------------------------- matrices


def _day_bounds_ms(config: SynthConfig) -> tuple[int, int]:
    """[start, end) of the date range in Unix ms (the days are local UTC+8 days)."""
    epoch = dt.date(1970, 1, 1)
    first = (dt.date.fromisoformat(config.first_day) - epoch).days * DAY_MS - UTC_PLUS_8_MS
    last = (dt.date.fromisoformat(config.last_day) - epoch).days * DAY_MS - UTC_PLUS_8_MS
    return first, last + DAY_MS


def _labelled(config: SynthConfig, world: _World, user: np.ndarray, item: np.ndarray,
              ts_ms: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    mu, pi0 = pair_params(config, world, user, item)
    ratio = _draw_ratio(config, mu, pi0, rng)
    duration = world.duration_ms[item]
    play = np.rint(ratio * duration).astype(np.int64)
    return {"user": user, "item": item, "ts_ms": ts_ms, "play": play, "duration": duration,
            "ratio": play / duration}


def _sorted_times(config: SynthConfig, user: np.ndarray, rng: np.random.Generator
                  ) -> np.ndarray:
    """Uniform timestamps (ms) for user-major rows, ascending within each user: the packed
    keys user * span + offset are sorted (a plain sort, far faster than an argsort)."""
    start, end = _day_bounds_ms(config)
    span = end - start
    keys = user * span + rng.integers(0, span, len(user))
    keys.sort()
    return start + keys % span


def big_matrix(config: SynthConfig, world: _World, rng: np.random.Generator,
               label_rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each user's rows in time order, videos drawn by popularity (re-watches included); then
    a share of rows logged twice (exact duplicates, as in the real big matrix)."""
    user = np.repeat(np.arange(config.n_users, dtype=np.int64), world.user_rows)
    ts = _sorted_times(config, user, rng)
    item = rng.choice(config.n_items, len(user), p=world.popularity)
    n_dup = round(config.big_rows * config.duplicate_share)
    repeats = np.ones(len(user), dtype=np.int64)
    repeats[rng.choice(len(user), n_dup, replace=False)] = 2
    rows = _labelled(config, world, user, item, ts, label_rng)
    return {name: np.repeat(values, repeats) for name, values in rows.items()}


def small_matrix(config: SynthConfig, world: _World, rng: np.random.Generator,
                 label_rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A nearly full user x video grid over a subset, each user's videos in random time
    order; some rows lack their time fields."""
    users = np.sort(rng.choice(config.n_users, config.small_users, replace=False))
    items = np.sort(rng.choice(config.n_items, config.small_items, replace=False))
    grid = rng.permuted(np.broadcast_to(items, (len(users), len(items))), axis=1)
    keep = rng.random(grid.shape) < config.small_density
    user = np.broadcast_to(users[:, None], grid.shape)[keep]
    item = grid[keep]
    ts = _sorted_times(config, user, rng)
    rows = _labelled(config, world, user, item, ts, label_rng)
    rows["no_time"] = rng.random(len(user)) < config.small_nan_time_share
    return rows


def _time_strings(ts_ms: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """'YYYY-MM-DD hh:mm:ss.fff' in UTC+8, built digit by digit (strftime is ~10x slower)."""
    local = ts_ms + UTC_PLUS_8_MS
    day, rem = np.divmod(local, DAY_MS)
    first = int(day.min())
    epoch = dt.date(1970, 1, 1)
    day_text = np.array(
        [list((epoch + dt.timedelta(days=d)).isoformat().encode())
         for d in range(first, int(day.max()) + 1)], dtype=np.uint8)
    n = len(ts_ms)
    buf = np.empty((n, 23), dtype=np.uint8)
    buf[:, :10] = day_text[day - first]
    buf[:, 10], buf[:, 13], buf[:, 16], buf[:, 19] = ord(" "), ord(":"), ord(":"), ord(".")
    digits = [(11, 36_000_000, 10), (12, 3_600_000, 10), (14, 600_000, 6), (15, 60_000, 10),
              (17, 10_000, 6), (18, 1_000, 10), (20, 100, 10), (21, 10, 10), (22, 1, 10)]
    for pos, div, mod in digits:
        buf[:, pos] = ord("0") + (rem // div) % mod
    offsets = np.arange(n + 1, dtype=np.int64) * 23
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf), bitmap)


def _dates(ts_ms: np.ndarray) -> np.ndarray:
    """YYYYMMDD integers of the UTC+8 day."""
    day = (ts_ms + UTC_PLUS_8_MS) // DAY_MS
    first = int(day.min())
    epoch = dt.date(1970, 1, 1)
    table = np.array([int((epoch + dt.timedelta(days=d)).strftime("%Y%m%d"))
                      for d in range(first, int(day.max()) + 1)], dtype=np.int64)
    return table[day - first]


def _csv_writer(path: Path, schema: pa.Schema) -> Any:
    """Unquoted like the real matrices (no value holds a comma); nulls as empty fields."""
    options = pcsv.WriteOptions(quoting_style="none", quoting_header="none")
    return pcsv.CSVWriter(path, schema, write_options=options)


def _write_matrix(path: Path, rows: dict[str, np.ndarray], world: _World, chunk_rows: int
                  ) -> None:
    n = len(rows["user"])
    schema = pa.schema([("user_id", pa.int64()), ("video_id", pa.int64()),
                        ("play_duration", pa.int64()), ("video_duration", pa.int64()),
                        ("time", pa.large_string()), ("date", pa.int64()),
                        ("timestamp", pa.float64()), ("watch_ratio", pa.float64())])
    with _csv_writer(path, schema) as writer:
        for lo in range(0, n, chunk_rows):
            part = {name: values[lo: lo + chunk_rows] for name, values in rows.items()}
            ts = part["ts_ms"]
            valid = ~part["no_time"] if "no_time" in part else None
            null = None if valid is None else ~valid
            writer.write_table(pa.table([
                pa.array(world.user_ids[part["user"]]), pa.array(world.item_ids[part["item"]]),
                pa.array(part["play"]),
                pa.array(part["duration"]), _time_strings(ts, valid),
                pa.array(_dates(ts), mask=null), pa.array(ts / 1000.0, mask=null),
                pa.array(part["ratio"]),
            ], schema=schema))


def _write_side_files(out: Path, config: SynthConfig, world: _World) -> None:
    """Copies of the real side files, or generated ones written the way pandas wrote the
    real ones (quotes only around values holding a comma; whole numbers with gaps as ``3``
    and an empty field)."""
    if config.side_dir:
        for name in (USER_FILE, ITEM_FILE):
            shutil.copyfile(Path(config.side_dir) / name, out / name)
        return
    assert world.user_features is not None
    users = world.user_features.copy()
    for name in users.columns:
        if name.startswith("onehot_feat"):
            users[name] = users[name].astype("Int64")
    users.to_csv(out / USER_FILE, index=False)
    feat = ["[" + ", ".join(str(t) for t in row if t >= 0) + "]"
            for row in world.item_tags.tolist()]
    pd.DataFrame({"video_id": world.item_ids, "feat": feat}).to_csv(
        out / ITEM_FILE, index=False)


def _write_oracle(path: Path, config: SynthConfig, world: _World, big: dict[str, np.ndarray],
                  small: dict[str, np.ndarray]) -> int:
    """One row per distinct (user, video) pair of either matrix, sorted by the raw ids."""
    n_items = config.n_items
    keys = np.concatenate([big["user"] * n_items + big["item"],
                           small["user"] * n_items + small["item"]])
    keys.sort()
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    user, item = np.divmod(keys, n_items)
    mu, pi0 = pair_params(config, world, user, item)
    median, mean = oracle_ratio(config, mu, pi0)
    duration = world.duration_ms[item]
    median = np.rint(median * duration) / duration  # same whole-ms rounding as the data
    # The mean to whole microseconds of play: exp/log differ in their last bits between CPUs
    # and C libraries, and the recorded data version (data.dvc) must regenerate byte for byte
    # on any machine. A ratio of two integers is one correctly rounded division everywhere.
    micro = duration * 1000.0
    mean = np.rint(mean * micro) / micro
    # Positions follow the raw ids' order, so the rows come out sorted by (user_id, video_id).
    user_ids, item_ids = world.user_ids[user], world.item_ids[item]
    table = pa.table({"user_id": user_ids, "video_id": item_ids,
                      "oracle_median_ratio": median, "oracle_mean_ratio": mean})
    with _csv_writer(path, table.schema) as writer:
        writer.write_table(table)
    return len(keys)

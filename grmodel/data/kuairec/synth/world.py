"""The latent world of the planted process: users (profiles, taste, activity) and videos (tags,
duration, popularity), drawn from independent random streams."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grmodel.data.io import DataSpecError
from grmodel.data.kuairec.readers import read_item_tags, read_user_features
from grmodel.data.kuairec.schema import ITEM_FILE, ONEHOT_LEVELS, USER_FILE
from grmodel.data.kuairec.synth.config import SynthConfig

# Profile fields that shift a user's bias in the planted process (so they carry signal).
BIAS_PROFILE_FIELDS = ("user_active_degree", "onehot_feat1", "onehot_feat4", "onehot_feat9")
# The profile field whose level sets a user's taste segment.
TASTE_PROFILE_FIELD = "onehot_feat2"


@dataclass
class World:
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



STREAMS = ("profiles", "users", "rows", "items", "big", "big_labels", "small", "small_labels")


def random_streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per concern, so that changing one size leaves the other
    draws unchanged."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children)}


def build_world(config: SynthConfig, rngs: dict[str, np.random.Generator]) -> World:
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
    return World(user_ids, item_ids, user_effect, user_zero_effect, taste, shared_taste,
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


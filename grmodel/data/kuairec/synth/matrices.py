"""The big and small interaction matrices as arrays: which (user, video) rows, when, and their
drawn labels."""

from __future__ import annotations

import datetime as dt

import numpy as np

from grmodel.data.kuairec.schema import DAY_MS, UTC_PLUS_8_MS
from grmodel.data.kuairec.synth.config import SynthConfig
from grmodel.data.kuairec.synth.law import draw_ratio, pair_params
from grmodel.data.kuairec.synth.world import World


def _day_bounds_ms(config: SynthConfig) -> tuple[int, int]:
    """[start, end) of the date range in Unix ms (the days are local UTC+8 days)."""
    epoch = dt.date(1970, 1, 1)
    first = (dt.date.fromisoformat(config.first_day) - epoch).days * DAY_MS - UTC_PLUS_8_MS
    last = (dt.date.fromisoformat(config.last_day) - epoch).days * DAY_MS - UTC_PLUS_8_MS
    return first, last + DAY_MS


def labelled(config: SynthConfig, world: World, user: np.ndarray, item: np.ndarray,
             ts_ms: np.ndarray, rng: np.random.Generator, log_shift: float = 0.0
             ) -> dict[str, np.ndarray]:
    """The rows (user, video, time) with labels drawn from the planted law; ``log_shift``
    moves every row's ``mu`` (a planted label shift: ratios times ``exp(log_shift)``)."""
    mu, pi0 = pair_params(config, world, user, item)
    ratio = draw_ratio(config, mu + log_shift, pi0, rng)
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


def big_matrix(config: SynthConfig, world: World, rng: np.random.Generator,
               label_rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each user's rows in time order, videos drawn by popularity (re-watches included); then
    a share of rows logged twice (exact duplicates, as in the real big matrix)."""
    user = np.repeat(np.arange(config.n_users, dtype=np.int64), world.user_rows)
    ts = _sorted_times(config, user, rng)
    item = rng.choice(config.n_items, len(user), p=world.popularity)
    n_dup = round(config.big_rows * config.duplicate_share)
    repeats = np.ones(len(user), dtype=np.int64)
    repeats[rng.choice(len(user), n_dup, replace=False)] = 2
    rows = labelled(config, world, user, item, ts, label_rng)
    return {name: np.repeat(values, repeats) for name, values in rows.items()}


def small_matrix(config: SynthConfig, world: World, rng: np.random.Generator,
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
    rows = labelled(config, world, user, item, ts, label_rng)
    rows["no_time"] = rng.random(len(user)) < config.small_nan_time_share
    return rows


"""KuaiRec-format raw files from a watch-time process unlike the default generator's.

The users, videos, durations, tags and interaction rows come from the KuaiRec-shaped world of
``grmodel.data.kuairec.synth`` (same file formats, so the real ingest reads them); the labels come from
a different law with its own feature effects, so that nothing in the models was tuned to it.
Per (user u, video i) with duration d seconds and z = the standardised log duration:

* quick skip, probability ``ps = sigmoid(skip_logit + activity[u] + skip_tag[first tag of i]
  + 0.5 z)``: the play lasts ``U(0, min(skip_seconds, d))`` seconds;
* re-watch, probability ``(1 - ps) pt``, ``pt = sigmoid(tail_logit + rewatch[i] - 0.8 z)``:
  the ratio is ``1 + exp(tail_mu + tail_sigma Z)`` (always past the video's end);
* otherwise a lognormal body: ratio ``exp(m + body_sigma Z)``, ``m = body_mu + patience[u]
  (register days, fans range, onehot_feat5) + quality[i] - 0.35 z``.

``play_duration`` is the ratio times the duration in whole ms. Given (u, i) -- the models see
``user_id`` and ``video_id`` -- the ratio's CDF is the mixture of those three closed forms;
the oracle median solves CDF = 1/2 by bisection (80 halvings of [0, an upper bound], far
below the ms rounding), then goes through the same whole-ms rounding as the data. The oracle
mean is closed form.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from grmodel.atomic import atomic_directory, write_json_atomic
from grmodel.data.generators.common import Presets, level_effects, normal_cdf
from grmodel.data.io import sha256_file
from grmodel.data.kuairec.schema import BIG, ORACLE_FILE, SMALL, SYNTH_FILE
from grmodel.data.kuairec.synth import SynthConfig, ratio_marginals
from grmodel.data.kuairec.synth.files import write_matrix, write_side_files
from grmodel.data.kuairec.synth.matrices import big_matrix, small_matrix
from grmodel.data.kuairec.synth.world import build_world, random_streams

PATIENCE_FIELDS = ("register_days_range", "fans_user_num_range", "onehot_feat5")


@dataclass
class RewatchConfig(Presets):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {},
        # About 100k rows: 76k big-matrix rows and a 120 x 200 small matrix.
        "default": {"world": {"n_users": 500, "big_rows": 76_000, "small_users": 120}},
    }

    preset_name: str = "default"
    seed: int = 2024
    # The world's sizes (SynthConfig fields); duplicates are off (labels are per row here).
    world: dict[str, Any] = dataclasses.field(default_factory=dict)
    skip_logit: float = -1.6
    skip_seconds: float = 1.5
    tail_logit: float = -3.6
    tail_mu: float = 0.3
    tail_sigma: float = 0.8
    body_mu: float = -0.45
    body_sigma: float = 0.55
    effect_sd: float = 0.3

    def synth_config(self) -> SynthConfig:
        return SynthConfig.preset(WORLD_PRESET[self.preset_name], seed=self.seed,
                                  duplicate_share=0.0, **self.world)


WORLD_PRESET = {"tiny": "tiny", "default": "default"}


@dataclass
class _Law:
    """Per-pair parameters of the planted law."""

    p_skip: np.ndarray
    p_tail: np.ndarray
    body_m: np.ndarray
    skip_ratio: np.ndarray  # the skip's upper end as a ratio of the duration


def generate_rewatch(out_dir: str | Path, config: RewatchConfig) -> dict[str, Any]:
    """Write a KuaiRec raw directory (matrices, side files, ``oracle.csv``, ``synth.json``)."""
    synth = config.synth_config()
    rngs = random_streams(config.seed)
    world = build_world(synth, rngs)
    effects = _effects(config, world, np.random.default_rng([config.seed, 1]))
    label_rng = np.random.default_rng([config.seed, 2])
    with atomic_directory(out_dir) as tmp:
        matrices = {}
        for name, draw, rng_name in ((BIG, big_matrix, "big"), (SMALL, small_matrix, "small")):
            rows = draw(synth, world, rngs[rng_name], rngs[f"{rng_name}_labels"])
            law = _law(config, world, effects, rows["user"], rows["item"])
            play = np.rint(_draw_ratio(config, law, label_rng) * rows["duration"]).astype(np.int64)
            rows.update(play=play, ratio=play / rows["duration"])
            write_matrix(tmp / name, rows, world, synth.chunk_rows)
            matrices[name] = rows
        write_side_files(tmp, synth, world)
        oracle_rows = _write_oracle(tmp / ORACLE_FILE, config, world, effects, matrices)
        summary = {
            "config": dataclasses.asdict(config),
            "world": dataclasses.asdict(synth),
            "rows": {"big_matrix": len(matrices[BIG]["user"]),
                     "small_matrix": len(matrices[SMALL]["user"]), "oracle": oracle_rows},
            "watch_ratio": {name.removesuffix(".csv"): ratio_marginals(rows["ratio"])
                            for name, rows in matrices.items()},
        }
        summary["sha256"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        write_json_atomic(tmp / SYNTH_FILE, {"generator": "grmodel.data.generators.rewatch",
                                             **summary})
    return summary


def _effects(config: RewatchConfig, world: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-user and per-video terms of the law (their own draws, not the default's)."""
    assert world.user_features is not None, "the rewatch law reads the generated profiles"
    profile = world.user_features
    sd = config.effect_sd
    activity = pd.factorize(profile["user_active_degree"], sort=True)[0]
    patience = np.zeros(len(profile))
    for name in PATIENCE_FIELDS:
        codes, levels = pd.factorize(profile[name], sort=True, use_na_sentinel=False)
        patience += level_effects(rng, len(levels), sd)[codes]
    n_tags = int(world.item_tags.max()) + 1
    log_duration = np.log(world.duration_ms)
    return {
        "activity": 2 * level_effects(rng, int(activity.max()) + 1, sd)[activity],
        "patience": patience,
        "skip_tag": level_effects(rng, n_tags, 2 * sd)[world.item_tags[:, 0]],
        "rewatch": rng.normal(0, 2 * sd, len(world.duration_ms)),
        "quality": rng.normal(0, sd, len(world.duration_ms)),
        "z": (log_duration - log_duration.mean()) / log_duration.std(),
    }


def _law(config: RewatchConfig, world: Any, effects: dict[str, np.ndarray], user: np.ndarray,
         item: np.ndarray) -> _Law:
    z = effects["z"][item]
    p_skip = _sigmoid(config.skip_logit + effects["activity"][user] + effects["skip_tag"][item]
                      + 0.5 * z)
    p_tail = _sigmoid(config.tail_logit + effects["rewatch"][item] - 0.8 * z)
    body_m = config.body_mu + effects["patience"][user] + effects["quality"][item] - 0.35 * z
    seconds = world.duration_ms[item] / 1000.0
    return _Law(p_skip, p_tail, body_m, np.minimum(config.skip_seconds, seconds) / seconds)


def _draw_ratio(config: RewatchConfig, law: _Law, rng: np.random.Generator) -> np.ndarray:
    n = len(law.body_m)
    skip = rng.random(n) < law.p_skip
    tail = rng.random(n) < law.p_tail
    body = np.exp(law.body_m + config.body_sigma * rng.normal(0, 1, n))
    rewatch = 1.0 + np.exp(config.tail_mu + config.tail_sigma * rng.normal(0, 1, n))
    quick = rng.random(n) * law.skip_ratio
    return np.where(skip, quick, np.where(tail, rewatch, body))


def ratio_cdf(config: RewatchConfig, law: _Law, r: np.ndarray) -> np.ndarray:
    """P(ratio <= r) for each pair of ``law`` (``r`` one value per pair)."""
    skip = np.minimum(r / law.skip_ratio, 1.0)
    with np.errstate(divide="ignore"):
        body = normal_cdf((np.log(r) - law.body_m) / config.body_sigma)
        tail = np.where(r > 1.0, normal_cdf((np.log(np.maximum(r - 1.0, 0.0)) - config.tail_mu)
                                            / config.tail_sigma), 0.0)
    rest = 1.0 - law.p_skip
    return law.p_skip * skip + rest * ((1.0 - law.p_tail) * body + law.p_tail * tail)


def oracle_ratio(config: RewatchConfig, law: _Law) -> tuple[np.ndarray, np.ndarray]:
    """(median, mean) of the continuous ratio per pair."""
    lo = np.zeros(len(law.body_m))
    hi = np.maximum(np.exp(law.body_m + 12 * config.body_sigma),
                    1.0 + math.exp(config.tail_mu + 12 * config.tail_sigma))
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        below = ratio_cdf(config, law, mid) < 0.5
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    body_mean = np.exp(law.body_m + config.body_sigma**2 / 2)
    tail_mean = 1.0 + math.exp(config.tail_mu + config.tail_sigma**2 / 2)
    mean = (law.p_skip * law.skip_ratio / 2
            + (1 - law.p_skip) * ((1 - law.p_tail) * body_mean + law.p_tail * tail_mean))
    return 0.5 * (lo + hi), mean


def _write_oracle(path: Path, config: RewatchConfig, world: Any, effects: dict[str, np.ndarray],
                  matrices: dict[str, dict[str, np.ndarray]]) -> int:
    """One row per distinct (user, video) pair of either matrix, in the synth oracle format."""
    n_items = len(world.item_ids)
    keys = np.unique(np.concatenate([rows["user"] * n_items + rows["item"]
                                     for rows in matrices.values()]))
    user, item = np.divmod(keys, n_items)
    median, mean = oracle_ratio(config, _law(config, world, effects, user, item))
    duration = world.duration_ms[item]
    pd.DataFrame({
        "user_id": world.user_ids[user], "video_id": world.item_ids[item],
        "oracle_median_ratio": np.rint(median * duration) / duration,  # the data's ms rounding
        "oracle_mean_ratio": mean,
    }).to_csv(path, index=False)
    return len(keys)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))

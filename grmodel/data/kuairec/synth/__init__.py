"""A KuaiRec-shaped generator with a planted label process and its exact oracle.

``generate_kuairec`` writes the four KuaiRec 2.0 files (``big_matrix.csv``,
``small_matrix.csv``, ``user_features.csv``, ``item_categories.csv``) with the real columns,
types and quirks (docs/kuairec.md), so the real ingest path is the one exercised, plus
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
import logging
from pathlib import Path
from typing import Any

import numpy as np

from grmodel.atomic import atomic_directory, write_json_atomic
from grmodel.data.io import sha256_file
from grmodel.data.kuairec.schema import BIG, GENERATOR, ORACLE_FILE, SMALL, SYNTH_FILE
from grmodel.data.kuairec.synth.config import PRESETS, SynthConfig
from grmodel.data.kuairec.synth.days import DaysConfig, generate_days
from grmodel.data.kuairec.synth.files import write_matrix, write_oracle, write_side_files
from grmodel.data.kuairec.synth.matrices import big_matrix, small_matrix
from grmodel.data.kuairec.synth.world import build_world, random_streams

__all__ = ["PRESETS", "DaysConfig", "SynthConfig", "generate_days", "generate_kuairec",
           "ratio_marginals"]

log = logging.getLogger(__name__)


def generate_kuairec(out_dir: str | Path, config: SynthConfig) -> dict[str, Any]:
    """Write a KuaiRec-shaped raw directory (atomically) and return a summary."""
    config.validate()
    rngs = random_streams(config.seed)
    world = build_world(config, rngs)
    with atomic_directory(out_dir, mark=False) as tmp:
        big = big_matrix(config, world, rngs["big"], rngs["big_labels"])
        small = small_matrix(config, world, rngs["small"], rngs["small_labels"])
        write_matrix(tmp / BIG, big, world, config.chunk_rows)
        write_matrix(tmp / SMALL, small, world, config.chunk_rows)
        write_side_files(tmp, config, world)
        oracle_rows = write_oracle(tmp / ORACLE_FILE, config, world, big, small)
        summary = {
            "config": dataclasses.asdict(config),
            "rows": {"big_matrix": len(big["user"]), "small_matrix": len(small["user"]),
                     "oracle": oracle_rows},
            "watch_ratio": {"big_matrix": ratio_marginals(big["ratio"]),
                            "small_matrix": ratio_marginals(small["ratio"])},
        }
        files = sorted(p.name for p in tmp.iterdir())
        summary["sha256"] = {name: sha256_file(tmp / name) for name in files}
        write_json_atomic(tmp / SYNTH_FILE, {"generator": GENERATOR, **summary})
    log.info("generated %s: %s", out_dir, summary["rows"])
    return summary


def ratio_marginals(ratio: np.ndarray) -> dict[str, float]:
    """The watch-ratio figures docs/kuairec.md quotes, for comparing with the real data."""
    q = np.quantile(ratio, [0.25, 0.5, 0.75, 0.99])
    return {
        "median": float(q[1]), "mean": float(ratio.mean()), "p25": float(q[0]),
        "p75": float(q[2]), "p99": float(q[3]), "max": float(ratio.max()),
        "share_above_5": float((ratio > 5).mean()), "share_zero": float((ratio == 0).mean()),
    }

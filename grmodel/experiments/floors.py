"""How close to the oracle can a model trained on this data get? A ladder of MAE floors.

The oracle knows the planted law exactly, including each user's own taste for each tag, which
no model can learn from a user's hundred-odd rows. This module re-creates the planted world of
a generated KuaiRec-format dataset (from the generator config its manifest records) and scores,
on the test split, plug-in predictors that know less and less:

* ``oracle``: the exact law (reproduces the dataset's ``oracle_median`` column);
* ``segment taste``: exact user and video effects, but only the part of each user's taste that
  the user's profile segment sets (the models see that profile field);
* ``no taste``: exact user and video effects, no taste at all;
* ``segment taste, effects from rows``: as ``segment taste``, with each user's and video's
  effect known only as well as its training rows allow (see :func:`_effect_noise_sd`);
* ``train median``: one constant.

Each predictor forms (mu, pi0) of the law, takes the conditional median of the watch ratio and
rounds the play to whole ms, as the data does. The effects-from-rows rung is an estimate, not a
bound: its noise is the sampling error of a median of n log-ratios, averaged over ``draws``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grmodel.data.kuairec.synth.config import SynthConfig
from grmodel.data.kuairec.synth.law import oracle_ratio, pair_params, standard_cdf
from grmodel.data.kuairec.synth.world import build_world, random_streams
from grmodel.features import DatasetError, read_manifest, read_split
from grmodel.metrics import mae

TEST_COLUMNS = ["user_id_raw", "item_id_raw", "label", "oracle_median"]


@dataclass(frozen=True)
class Floor:
    """One rung: what the predictor knows, and its test MAE."""

    name: str
    knows: str
    mae: float
    ratio_to_oracle: float


def learnable_floors(processed_dir: str | Path, draws: int = 5, seed: int = 0) -> list[Floor]:
    """The ladder of floors on a generated KuaiRec-format dataset's test split."""
    manifest = read_manifest(processed_dir)
    config = _synth_config(manifest, processed_dir)
    world = build_world(config, random_streams(config.seed))
    test = read_split(processed_dir, "test", columns=TEST_COLUMNS)
    train = read_split(processed_dir, "train", columns=["user_id_raw", "item_id_raw"])
    user = _positions(world.user_ids, test["user_id_raw"].to_numpy(), processed_dir, "user_id_raw")
    item = _positions(world.item_ids, test["item_id_raw"].to_numpy(), processed_dir, "item_id_raw")
    label = test["label"].to_numpy(dtype=np.float64)
    duration_ms = world.duration_ms[item]

    def score(variant: Any) -> float:
        mu, pi0 = pair_params(config, variant, user, item)
        median_ratio = oracle_ratio(config, mu, pi0)[0]
        return mae(label, np.rint(median_ratio * duration_ms) / 1000.0)

    segment = dataclasses.replace(world, taste=world.shared_taste)
    no_taste = dataclasses.replace(world, taste=np.zeros_like(world.taste))
    rng = np.random.default_rng(seed)
    user_sd = _effect_noise_sd(config, _row_counts(world.user_ids, train["user_id_raw"]),
                               float(np.std(world.user_effect)))
    item_sd = _effect_noise_sd(config, _row_counts(world.item_ids, train["item_id_raw"]),
                               float(np.std(world.item_effect)))
    from_rows = float(np.mean([
        score(dataclasses.replace(
            segment,
            user_effect=world.user_effect + rng.normal(0.0, user_sd),
            item_effect=world.item_effect + rng.normal(0.0, item_sd)))
        for _ in range(draws)
    ]))
    train_labels = read_split(processed_dir, "train", columns=["label"])["label"].to_numpy()
    oracle = score(world)
    recorded = mae(label, test["oracle_median"].to_numpy(dtype=np.float64))
    if not math.isclose(oracle, recorded, rel_tol=1e-6):
        raise DatasetError(f"{processed_dir}: the re-created law scores MAE {oracle:.6f} but the"
                           f" recorded oracle_median scores {recorded:.6f} (rule: the generator"
                           " config in manifest.json re-creates the data's law)")
    rungs = [
        ("oracle", "the planted law exactly, each user's own taste included", oracle),
        ("segment taste", "exact user and video effects; only the taste the user's profile"
         " segment sets", score(segment)),
        ("no taste", "exact user and video effects; no taste", score(no_taste)),
        ("segment taste, effects from rows", f"segment taste; each user's and video's effect"
         f" with the sampling error of its training rows (mean of {draws} draws)", from_rows),
        ("train median", "nothing: one constant", mae(label, np.full(len(label),
                                                                      np.median(train_labels)))),
    ]
    return [Floor(name, knows, value, value / oracle) for name, knows, value in rungs]


def _synth_config(manifest: dict[str, Any], processed_dir: str | Path) -> SynthConfig:
    generator = manifest.get("generator") or {}
    if "config" not in generator:
        raise DatasetError(f"{processed_dir}/manifest.json: no generator config (rule: floors"
                           " need a dataset made by `grmodel data synth` and `grmodel data"
                           " ingest`)")
    if manifest.get("options", {}).get("label_mode") != "watch_time":
        raise DatasetError(f"{processed_dir}/manifest.json: options.label_mode is not watch_time"
                           " (rule: floors are computed for watch-time labels)")
    fields = {f.name for f in dataclasses.fields(SynthConfig)}
    return SynthConfig(**{k: v for k, v in generator["config"].items() if k in fields})


def _positions(ids: np.ndarray, raw: np.ndarray, processed_dir: str | Path, column: str
               ) -> np.ndarray:
    order = np.argsort(ids)
    at = np.searchsorted(ids, raw, sorter=order).clip(0, len(ids) - 1)
    found = ids[order[at]] == raw
    if not found.all():
        raise DatasetError(f"{processed_dir}/test.parquet: {column}: {int((~found).sum())} ids"
                           " are not in the generated world (rule: the dataset was generated with"
                           " the config its manifest records)")
    return order[at]


def _row_counts(ids: np.ndarray, raw: pd.Series) -> np.ndarray:
    counts = raw.value_counts()
    return counts.reindex(ids, fill_value=0).to_numpy()


def _effect_noise_sd(config: SynthConfig, rows: np.ndarray, spread: float) -> np.ndarray:
    """Sampling sd of an effect estimated from n rows: the median of n log-ratios has sd
    1 / (2 h(m) sqrt(n)), with h the density of the standard log-ratio at its median m. It is
    capped at the effects' own spread, which guessing 0 (the mean effect) already achieves;
    an unseen user or video (n = 0) gets that spread."""
    median_log = math.log(float(oracle_ratio(config, np.zeros(1), np.zeros(1))[0][0]))
    density = float(standard_cdf(config, np.array([median_log]))[1][0])
    sampling = 1.0 / (2.0 * density * np.sqrt(np.maximum(rows, 1)))
    return np.where(rows > 0, np.minimum(sampling, spread), spread)


def floors_markdown(floors: list[Floor]) -> str:
    lines = ["| floor | knows | test MAE | ÷ oracle |", "|---|---|---:|---:|"]
    lines += [f"| {f.name} | {f.knows} | {f.mae:.4f} | {f.ratio_to_oracle:.3f} |" for f in floors]
    return "\n".join(lines)


def floors_json(floors: list[Floor]) -> str:
    return json.dumps([dataclasses.asdict(f) for f in floors], indent=2)

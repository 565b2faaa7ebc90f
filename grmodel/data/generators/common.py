"""What the generator families share: presets, seeded level effects, normal quantiles and the
writer of a tabular-spec source (a Parquet table, its spec and the generator's record)."""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import yaml

from grmodel.atomic import atomic_directory, write_json_atomic, write_text_atomic
from grmodel.data.io import DataSpecError, sha256_file

SOURCE_FILE, SPEC_FILE, GENERATOR_FILE = "table.parquet", "spec.yaml", "generator.json"
ORACLE_COLUMN = "oracle_median"

# Rows of a generated table at each preset (the tabular families).
TABLE_PRESETS: dict[str, dict[str, Any]] = {"tiny": {"n_rows": 3_000}, "default": {}}

_erfc = np.frompyfunc(math.erfc, 1, 1)
_inv_cdf = np.frompyfunc(statistics.NormalDist().inv_cdf, 1, 1)


class Presets:
    """Mixin of a generator's config dataclass: ``Config.preset(name, **overrides)`` builds it
    at one of its ``PRESETS`` (``tiny``: seconds in tests; ``default``: big enough to rank
    models)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = TABLE_PRESETS

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Any:
        if name not in cls.PRESETS:
            raise DataSpecError(f"unknown preset {name!r} for {cls.__name__}; expected one of"
                                f" {list(cls.PRESETS)}")
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise DataSpecError(f"unknown {cls.__name__} field(s) {unknown}")
        return cls(preset_name=name, **{**cls.PRESETS[name], **overrides})


def level_effects(rng: np.random.Generator, n_levels: int, sd: float) -> np.ndarray:
    """A centred random effect per level of a categorical field."""
    effects = rng.normal(0.0, sd, n_levels)
    return effects - effects.mean()


def zipf_levels(rng: np.random.Generator, n_levels: int, n: int, power: float = 0.8
                ) -> np.ndarray:
    """Level indices 0..n_levels-1 with Zipf-like frequencies (level 0 the most common)."""
    p = 1.0 / np.arange(1, n_levels + 1) ** power
    return rng.choice(n_levels, n, p=p / p.sum())


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, elementwise, to double precision."""
    return 0.5 * _erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2.0)).astype(np.float64)


def normal_quantile(q: np.ndarray) -> np.ndarray:
    """Standard normal quantile for 0 < q < 1, elementwise."""
    return _inv_cdf(np.asarray(q, dtype=np.float64)).astype(np.float64)


def calibrated_intercept(logits: np.ndarray, target_share: float) -> float:
    """The shift c with mean(sigmoid(logits + c)) == target_share (bisection), so a share
    hits its target whatever the seed and size."""
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if np.mean(1.0 / (1.0 + np.exp(-(logits + mid)))) < target_share:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def write_tabular_source(out_dir: str | Path, frame: pd.DataFrame, spec: dict[str, Any],
                         record: dict[str, Any]) -> dict[str, Any]:
    """``table.parquet``, ``spec.yaml`` (a tabular spec naming it) and ``generator.json``,
    written atomically; the record with the table's sha256."""
    with atomic_directory(out_dir) as tmp:
        frame.to_parquet(tmp / SOURCE_FILE, index=False)
        write_text_atomic(tmp / SPEC_FILE, yaml.safe_dump({**spec, "source": SOURCE_FILE},
                                                           sort_keys=False))
        record = {**record, "rows": len(frame), "sha256": {SOURCE_FILE: sha256_file(
            tmp / SOURCE_FILE)}}
        write_json_atomic(tmp / GENERATOR_FILE, record)
    return record


def label_summary(label: np.ndarray, oracle: np.ndarray) -> dict[str, float]:
    """The label-shape facts a generator records (and its tests check)."""
    q = np.quantile(label, [0.01, 0.5, 0.99])
    median = float(np.median(label))
    return {
        "share_zero": float((label == 0).mean()), "min": float(label.min()),
        "p01": float(q[0]), "median": float(q[1]), "p99": float(q[2]),
        "max": float(label.max()), "mean": float(label.mean()),
        "distinct_share": float(len(np.unique(label)) / len(label)),
        "oracle_mae": float(np.abs(label - oracle).mean()),
        "median_mae": float(np.abs(label - median).mean()),
    }


def config_record(generator: str, config: Any) -> dict[str, Any]:
    return {"generator": generator, "config": dataclasses.asdict(config)}

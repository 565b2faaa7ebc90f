"""The manifest's label statistics from a label column's distinct values and their counts."""

from __future__ import annotations

from typing import Any

import numpy as np

from grmodel.counted import quantiles
from grmodel.data.encoding import LABEL_QUANTILES


def label_stats_from_counts(values: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """:func:`grmodel.data.encoding.label_stats` of the labels ``values`` repeated ``counts``
    times. count, min, max, quantiles and share_zero are equal bit for bit; mean and std are
    sums taken in another order (equal to about 1e-15 relative)."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return {"count": 0}
    mean = float(np.dot(values, counts) / n)
    std = float(np.sqrt(np.dot((values - mean) ** 2, counts) / n))
    q = quantiles(values, counts, np.asarray(LABEL_QUANTILES))
    return {
        "count": n, "mean": mean, "std": std,
        "min": float(values.min()), "max": float(values.max()),
        "quantiles": {f"{p:g}": float(v) for p, v in zip(LABEL_QUANTILES, q)},
        "share_zero": float(counts[values == 0].sum() / n),
    }

"""Statistics of a column given as distinct values and their counts, equal to numpy's on the
column itself: what a distributed engine can aggregate and a driver can hold."""

from __future__ import annotations

from typing import Any

import numpy as np

from grmodel.data.tabular import LABEL_QUANTILES


def order_statistics(values: np.ndarray, counts: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The ``ranks``-th smallest (0-based) of ``values`` repeated ``counts`` times (values
    ascending)."""
    return values[np.searchsorted(np.cumsum(counts), ranks, side="right")]


def quantiles(values: np.ndarray, counts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(np.repeat(values, counts), q)`` (method "linear") without repeating:
    numpy's virtual index (n-1)q, its neighbours and its interpolation, step for step, so the
    result is the same float64."""
    order = np.argsort(values, kind="stable")
    values, counts = np.asarray(values, np.float64)[order], np.asarray(counts)[order]
    n = int(counts.sum())
    q = np.asarray(q, dtype=np.float64)
    virtual = (n - 1) * q
    below = np.floor(virtual)
    above = below + 1
    top = virtual >= n - 1
    below[top], above[top] = n - 1, n - 1
    a = order_statistics(values, counts, below.astype(np.int64))
    b = order_statistics(values, counts, above.astype(np.int64))
    gamma = virtual - np.where(top, virtual, below)
    gamma[top] = 0.0
    diff = b - a
    out = a + diff * gamma
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), out)


def label_stats_from_counts(values: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """:func:`grmodel.data.tabular.label_stats` of the labels ``values`` repeated ``counts``
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

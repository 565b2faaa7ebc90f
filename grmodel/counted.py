"""Statistics of a column given as distinct values and how often each occurs, equal to
numpy's on the column itself. A distributed engine counts values; a driver holds the counts."""

from __future__ import annotations

import numpy as np

# Distinct values a driver collects for exact statistics (16 bytes each with their counts); a
# column with more gets approximate quantiles, with this relative error on the rank
# (Greenwald-Khanna, Spark's approxQuantile).
MAX_DISTINCT = 5_000_000
APPROX_RELATIVE_ERROR = 1e-4


def _sorted(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(values, kind="stable")
    return np.asarray(values, np.float64)[order], np.asarray(counts, np.int64)[order]


def order_statistics(values: np.ndarray, counts: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The ``ranks``-th smallest (0-based) of ``values`` repeated ``counts`` times (values
    ascending)."""
    return values[np.searchsorted(np.cumsum(counts), ranks, side="right")]


def quantiles(values: np.ndarray, counts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(np.repeat(values, counts), q)`` (method "linear") without repeating:
    numpy's virtual index (n-1)q, its neighbours and its interpolation, step for step, so the
    result is the same float64."""
    values, counts = _sorted(values, counts)
    n = int(counts.sum())
    q = np.asarray(q, dtype=np.float64)
    virtual = (n - 1) * q
    below = np.floor(virtual)
    above = below + 1
    top = virtual >= n - 1
    below[top], above[top] = n - 1, n - 1
    a = order_statistics(values, counts, below.astype(np.int64))
    b = order_statistics(values, counts, above.astype(np.int64))
    gamma = np.where(top, 0.0, virtual - below)
    diff = b - a
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def median(values: np.ndarray, counts: np.ndarray) -> float:
    """``np.median(np.repeat(values, counts))`` without repeating."""
    values, counts = _sorted(values, counts)
    n = int(counts.sum())
    low, high = order_statistics(values, counts, np.array([(n - 1) // 2, n // 2]))
    return float(np.mean([low, high]))

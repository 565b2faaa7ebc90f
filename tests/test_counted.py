"""Statistics from value counts equal numpy's on the repeated values, bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from grmodel.counted import median, quantiles


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200), st.integers(0, 3),
       st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_quantiles_and_median_from_counts_equal_numpys(values, digits, q) -> None:
    y = np.round(np.asarray(values), digits)
    distinct, counts = np.unique(y, return_counts=True)
    q = np.asarray([*q, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(quantiles(distinct, counts, q), np.quantile(y, q))
    assert median(distinct, counts) == np.median(y)


def test_unsorted_distinct_values_are_accepted() -> None:
    values, counts = np.array([5.0, 1.0, 3.0]), np.array([1, 2, 3])
    y = np.repeat(values, counts)
    np.testing.assert_array_equal(quantiles(values, counts, np.array([0.1, 0.9])),
                                  np.quantile(y, [0.1, 0.9]))

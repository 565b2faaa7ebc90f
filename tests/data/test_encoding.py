"""Encoders fitted on training rows: vocabularies and quantile buckets."""

from __future__ import annotations

import numpy as np

from grmodel.data.encoding import quantile_edges, vocabulary
from grmodel.features import bucketise, encode


def test_vocabulary_is_fitted_on_the_fitting_rows_only() -> None:
    values = np.array(["b", "a", None, "c", "a", "z"], dtype=object)
    fit = np.array([True, True, True, False, True, False])
    vocab = vocabulary(values, fit)
    assert list(vocab) == ["a", "b"]
    np.testing.assert_array_equal(encode(values, vocab), [3, 2, 0, 1, 2, 1])


def test_quantile_buckets() -> None:
    edges = quantile_edges(np.arange(100, dtype=float), 4)
    np.testing.assert_allclose(edges, [24.75, 49.5, 74.25])
    ids = bucketise(np.array([np.nan, -5.0, 24.75, 50.0, 1e9]), edges)
    np.testing.assert_array_equal(ids, [0, 2, 3, 4, 5])
    assert len(quantile_edges(np.ones(50), 10)) == 1  # ties collapse to one edge

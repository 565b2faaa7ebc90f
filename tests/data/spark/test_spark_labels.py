"""Label statistics from Spark: exact from value counts; past the distinct-value limit Spark's
approxQuantile, each quantile's rank within the stated relative error (20,000 labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grmodel.data.encoding import LABEL_QUANTILES
from grmodel.data.tabular import label_stats as numpy_label_stats

pytestmark = pytest.mark.slow


def test_exact_then_approximate_label_statistics(spark) -> None:
    from grmodel.counted import APPROX_RELATIVE_ERROR
    from grmodel.data.spark.labels import label_stats

    y = np.round(np.random.default_rng(4).lognormal(2, 1.5, 20_000), 3)
    y[:1_500] = 0.0
    frame = spark.createDataFrame(pd.DataFrame({"y": y}))
    exact, method = label_stats(frame, "y")
    want = numpy_label_stats(y)
    assert method.startswith("exact")
    assert exact["quantiles"] == want["quantiles"] and exact["share_zero"] == want["share_zero"]
    assert exact["mean"] == pytest.approx(want["mean"], rel=1e-12)

    approx, method = label_stats(frame, "y", limit=100)
    assert method.startswith("approximate") and f"{APPROX_RELATIVE_ERROR:g}" in method
    assert (approx["count"], approx["min"], approx["max"]) == (len(y), y.min(), y.max())
    ordered = np.sort(y)
    slack = APPROX_RELATIVE_ERROR * len(y) + 1
    for p in LABEL_QUANTILES:
        value = approx["quantiles"][f"{p:g}"]
        low, high = np.searchsorted(ordered, value, "left"), np.searchsorted(ordered, value, "right")
        # some rank of ``value`` lies within the stated error of the asked rank
        assert low - slack <= p * len(y) <= high + slack, (p, value)

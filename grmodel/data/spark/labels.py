"""Label statistics and counts from Spark: a label column as its distinct values and their
counts (exact, as long as the distinct values fit the driver), else Spark's approximate
quantiles with a stated relative error."""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from grmodel.counted import APPROX_RELATIVE_ERROR, MAX_DISTINCT
from grmodel.data.encoding import LABEL_QUANTILES
from grmodel.data.spark.counts import label_stats_from_counts


def value_counts(frame: DataFrame, column: str, limit: int = MAX_DISTINCT
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """(distinct values ascending, their counts) of ``column``, or None past ``limit``."""
    grouped = frame.groupBy(column).count()
    if grouped.limit(limit + 1).count() > limit:
        return None
    table = grouped.toPandas().sort_values(column)
    return table[column].to_numpy(dtype=np.float64), table["count"].to_numpy(dtype=np.int64)


def label_stats(frame: DataFrame, column: str, limit: int = MAX_DISTINCT
                ) -> tuple[dict[str, Any], str]:
    """The manifest's training-label statistics of ``column`` (encoding.label_stats' fields),
    and how they were computed."""
    counted = value_counts(frame, column, limit)
    if counted is not None:
        return (label_stats_from_counts(*counted),
                "exact: distinct values and counts (mean and std summed in another order)")
    found = frame.agg(F.count(column).alias("n"), F.mean(column).alias("mean"),
                      F.stddev_pop(column).alias("std"), F.min(column).alias("min"),
                      F.max(column).alias("max"),
                      F.avg((F.col(column) == 0).cast("double")).alias("zero")).first()
    q = frame.approxQuantile(column, list(LABEL_QUANTILES), APPROX_RELATIVE_ERROR)
    stats = {"count": int(found["n"]), "mean": float(found["mean"]), "std": float(found["std"]),
             "min": float(found["min"]), "max": float(found["max"]),
             "quantiles": {f"{p:g}": float(v) for p, v in zip(LABEL_QUANTILES, q)},
             "share_zero": float(found["zero"])}
    return stats, (f"approximate: more than {limit:,} distinct labels; quantiles by"
                   f" approxQuantile with relative rank error {APPROX_RELATIVE_ERROR:g}")

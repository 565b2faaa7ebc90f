"""The encoding machinery every ingest shares: encoders (id tables) fitted on training rows only (id 0
missing, 1 unseen, 2.. known values in sorted order), quantile buckets for numeric fields and
training-label statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from grmodel.features import FIRST_KNOWN_ID, FieldSpec, bucketise, encode, vocabulary_record

LABEL_QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)


def vocabulary(values: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    """Sorted distinct non-missing values among ``values[fit_rows]`` (the training rows)."""
    seen = pd.Series(values[fit_rows]).dropna().unique()
    return np.sort(np.asarray(seen))


def quantile_edges(values: np.ndarray, n_buckets: int) -> np.ndarray:
    """Inner bucket edges at the 1/n .. (n-1)/n quantiles of the finite values (deduplicated)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0 or n_buckets < 2:
        return np.empty(0)
    return np.unique(np.quantile(finite, np.arange(1, n_buckets) / n_buckets))


def label_stats(y: np.ndarray) -> dict[str, Any]:
    """Descriptive statistics of (training) labels, recorded in the manifest."""
    if len(y) == 0:
        return {"count": 0}
    q = np.quantile(y, LABEL_QUANTILES)
    return {
        "count": int(len(y)), "mean": float(y.mean()), "std": float(y.std()),
        "min": float(y.min()), "max": float(y.max()),
        "quantiles": {f"{p:g}": float(v) for p, v in zip(LABEL_QUANTILES, q)},
        "share_zero": float((y == 0).mean()),
    }


@dataclass
class EncodedField:
    """A field's ids, per row, or per entity with ``index`` mapping rows to entities."""

    spec: FieldSpec
    ids: np.ndarray
    index: np.ndarray | None = None
    fitted: dict[str, Any] = field(default_factory=dict)  # what the manifest records
    encoder: dict[str, Any] = field(default_factory=dict)  # its entry in ENCODERS_FILE
    raw: np.ndarray | None = None  # the values encoded (indexed as ids): the test's raw columns

    def rows(self, rows: np.ndarray) -> np.ndarray:
        return self.ids[rows] if self.index is None else self.ids[self.index[rows]]

    def raw_rows(self, rows: np.ndarray) -> np.ndarray:
        assert self.raw is not None
        return self.raw[rows] if self.index is None else self.raw[self.index[rows]]


def categorical_field(name: str, side: str, values: np.ndarray, fit_rows: np.ndarray,
                      index: np.ndarray | None = None, optional: bool = True,
                      table: str | None = None, vocab: np.ndarray | None = None
                      ) -> EncodedField:
    """Fit a vocabulary on the fitting rows (or use ``vocab``, shared by a table's fields) and
    encode every value."""
    if vocab is None:
        vocab = vocabulary(values, fit_rows)
    spec = FieldSpec(name, side, FIRST_KNOWN_ID + len(vocab),  # type: ignore[arg-type]
                     mask_column=f"{name}_mask" if optional else None, table=table)
    return EncodedField(spec, encode(values, vocab), index, {"known_values": len(vocab)},
                        vocabulary_record(vocab), values)


def bucket_field(name: str, side: str, values: np.ndarray, fit_rows: np.ndarray,
                 n_buckets: int, index: np.ndarray | None = None, optional: bool = True
                 ) -> EncodedField:
    """Quantile buckets fitted on the fitting rows' values."""
    edges = quantile_edges(values[fit_rows], n_buckets)
    spec = FieldSpec(name, side, FIRST_KNOWN_ID + len(edges) + 1,  # type: ignore[arg-type]
                     mask_column=f"{name}_mask" if optional else None)
    fitted = {"buckets": len(edges) + 1, "edges": [float(e) for e in edges]}
    return EncodedField(spec, bucketise(values, edges), index, fitted,
                        {"edges": fitted["edges"]}, values)

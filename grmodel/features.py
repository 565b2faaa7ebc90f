"""The processed-dataset contract shared by ingest, validation, training and serving.

A processed dataset is a directory holding ``train.parquet``, ``valid.parquet``,
``test.parquet`` and ``manifest.json``. Each split has, per categorical field, an integer id
column named after the field, and:

* id ``0`` means *missing* (masked out of pooling), id ``1`` means *unseen in training*
  (out-of-vocabulary, a learned embedding), ids ``>= 2`` are values seen in training;
* optional fields also carry a ``<field>_mask`` column (uint8, 1 where the id is valid),
  always equal to ``id != 0``;
* ``label`` (float64, non-negative, in the label unit the manifest names), ``duration_s``
  (float64), ``timestamp`` (float64, NaN allowed), ``user_id_raw`` / ``item_id_raw`` (the
  source ids, for joins and debugging);
* test splits of generated data may carry ``oracle_median`` and ``oracle_mean`` (the best
  possible predictions given the model's features).

``manifest.json`` holds ``{"format": FORMAT, "features": FeatureSchema.to_dict(), "label":
{...}, "splits": {...}, ...}``; :class:`FeatureSchema` is the part a model needs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

FORMAT = "grmodel.processed/1"
MISSING_ID = 0
OOV_ID = 1
FIRST_KNOWN_ID = 2
SPLITS = ("train", "valid", "test")
LABEL_COLUMN = "label"
# A split with fewer rows is worth a warning (its metrics are noise): the builders and the
# processed validation suite both read this.
FEW_SPLIT_ROWS = 1_000


class DatasetError(ValueError):
    """Bad processed data: names the file, the column and the rule that failed."""


@dataclass(frozen=True)
class FieldSpec:
    """One categorical input field."""

    name: str
    side: Literal["user", "item"]
    cardinality: int  # number of ids including the reserved MISSING_ID and OOV_ID
    mask_column: str | None = None  # set for optional fields
    table: str | None = None  # fields sharing an embedding table (e.g. item tags) name it

    @property
    def table_name(self) -> str:
        return self.table or self.name


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered list of input fields a model consumes."""

    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"fields": [asdict(f) for f in self.fields]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureSchema:
        return cls(tuple(FieldSpec(**f) for f in raw["fields"]))

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def tables(self) -> dict[str, int]:
        """Embedding table name -> rows (the largest cardinality among its fields)."""
        sizes: dict[str, int] = {}
        for f in self.fields:
            sizes[f.table_name] = max(sizes.get(f.table_name, 0), f.cardinality)
        return sizes

    def arrays(self, frame: pd.DataFrame, source: str = "<frame>") -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [N, F], mask float32 [N, F]) in schema order, checked against the schema."""
        missing = [name for name in self.names if name not in frame.columns]
        if missing:
            raise DatasetError(f"{source}: missing feature columns {missing}")
        ids = np.empty((len(frame), len(self.fields)), dtype=np.int64)
        for j, spec in enumerate(self.fields):
            col = frame[spec.name]
            if col.isna().any():
                raise DatasetError(f"{source}: column {spec.name!r} has null ids (rule: not null)")
            values = col.to_numpy(dtype=np.int64, copy=False)
            if len(values) and (values.min() < 0 or values.max() >= spec.cardinality):
                raise DatasetError(
                    f"{source}: column {spec.name!r} has ids outside [0, {spec.cardinality})"
                    " (rule: ids within encoder size)"
                )
            ids[:, j] = values
        mask = (ids != MISSING_ID).astype(np.float32)
        return ids, mask


def read_manifest(processed_dir: str | Path) -> dict[str, Any]:
    path = Path(processed_dir) / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"{path}: not found (rule: a processed dataset has a manifest)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def read_split(
    processed_dir: str | Path, split: str, max_rows: int | None = None
) -> pd.DataFrame:
    """Read one split of a processed dataset as a DataFrame."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(processed_dir) / f"{split}.parquet"
    if not path.is_file():
        raise DatasetError(f"{path}: not found (rule: every split is present)")
    frame = pd.read_parquet(path)
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.iloc[:max_rows].reset_index(drop=True)
    return frame


def read_labels(processed_dir: str | Path, split: str, column: str = LABEL_COLUMN,
                max_rows: int | None = None) -> np.ndarray:
    """One split's label column alone (checked as :func:`label_array` does)."""
    path = Path(processed_dir) / f"{split}.parquet"
    if split not in SPLITS or not path.is_file():
        read_split(processed_dir, split)  # raises the clear error
    try:
        frame = pd.read_parquet(path, columns=[column])
    except (KeyError, ValueError):  # pyarrow: ArrowInvalid for a missing column
        frame = pd.DataFrame()  # label_array names the missing column
    if max_rows is not None:
        frame = frame.iloc[:max_rows]
    return label_array(frame, column, str(path))


def label_array(frame: pd.DataFrame, column: str = LABEL_COLUMN, source: str = "<frame>") -> np.ndarray:
    """The label column as float64, checked non-negative and finite."""
    if column not in frame.columns:
        raise DatasetError(f"{source}: missing label column {column!r}")
    y = frame[column].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(y) | (y < 0)
    if bad.any():
        raise DatasetError(
            f"{source}: column {column!r} has {int(bad.sum())} values that are negative or not"
            " finite (rule: label non-negative and finite)"
        )
    return y

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
  possible predictions given the model's features);
* test splits carry, per field, ``raw__<field>``: the value its encoder read (see
  :data:`RAW_PREFIX`), so that a model trained on other data (a champion with other
  encoders) scores the same rows through its own encoders.

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
import pyarrow as pa
import pyarrow.parquet as pq

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

    def check_columns(self, columns: list[str], dtypes: list[Any], source: str = "<frame>"
                      ) -> None:
        """Every feature column is present with an integer dtype (a float id such as 3.7 is
        refused, never truncated). ``dtypes`` are numpy, pandas or Arrow types."""
        missing = [name for name in self.names if name not in columns]
        if missing:
            raise DatasetError(f"{source}: missing feature columns {missing}"
                               " (rule: every feature column of the model)")
        if len(set(columns)) < len(columns):
            repeated = sorted({c for c in columns if columns.count(c) > 1} & set(self.names))
            if repeated:
                raise DatasetError(f"{source}: columns {repeated} appear more than once"
                                   " (rule: unique column names)")
        kinds = dict(zip(columns, dtypes))
        for name in self.names:
            if not _is_integer_type(kinds[name]):
                raise DatasetError(
                    f"{source}: column {name!r} has dtype {_type_name(kinds[name])} (rule:"
                    " feature ids are integers; pass raw values with --raw-ids to have the"
                    " model encode them)")

    def arrays(self, frame: pd.DataFrame, source: str = "<frame>") -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [N, F], mask float32 [N, F]) in schema order, checked against the schema:
        integer dtypes, no nulls, every id within its field's encoder size."""
        self.check_columns([str(c) for c in frame.columns], list(frame.dtypes), source)
        ids = np.empty((len(frame), len(self.fields)), dtype=np.int64)
        for j, spec in enumerate(self.fields):
            col = frame[spec.name]
            if col.isna().any():
                raise DatasetError(f"{source}: column {spec.name!r} has null ids (rule: not null)")
            values = col.to_numpy()
            # Range first, in the column's own dtype: a uint64 beyond int64 must not wrap.
            if len(values) and (values.min() < 0 or values.max() >= spec.cardinality):
                bad = values[(values < 0) | (values >= spec.cardinality)][0]
                raise DatasetError(
                    f"{source}: column {spec.name!r} has ids outside [0, {spec.cardinality}),"
                    f" such as {bad} (rule: ids within the model's vocabulary)"
                )
            ids[:, j] = values
        mask = (ids != MISSING_ID).astype(np.float32)
        return ids, mask


def _type_name(dtype: Any) -> str:
    """A dtype as pandas names it (float64, object, bool), Arrow types included."""
    try:
        return str(pd.api.types.pandas_dtype(dtype.to_pandas_dtype())) if hasattr(
            dtype, "to_pandas_dtype") else str(dtype)
    except (NotImplementedError, TypeError):
        return str(dtype)


def _is_integer_type(dtype: Any) -> bool:
    if isinstance(dtype, pa.DataType):
        return pa.types.is_integer(dtype)
    return pd.api.types.is_integer_dtype(dtype)


# ------------------------------------------------------------------------------- raw values
# The test split keeps each field's raw value (what the ingest gave its encoder: a user's
# profile value, a video's mean duration, ...) in the column RAW_PREFIX + field. Ids are
# positions in encoders fitted on each dataset's training rows, so the same id means
# another value in another dataset; raw values mean the same everywhere.

RAW_PREFIX = "raw__"


def raw_column(field_name: str) -> str:
    """The test split's column holding ``field_name``'s raw values."""
    return RAW_PREFIX + field_name


def raw_arrow_type(encoder: dict[str, Any]) -> pa.DataType:
    """The Arrow type of a field's raw values: its encoder's kind (a bucketed field's are
    numbers); what every engine writes, so that :func:`encode_raw` reads them back."""
    if "edges" in encoder:
        return pa.float64()
    return {"int": pa.int64(), "float": pa.float64()}.get(encoder.get("kind", ""), pa.string())


def read_raw_values(processed_dir: str | Path, names: list[str], max_rows: int | None = None
                    ) -> pd.DataFrame:
    """The test rows' raw values of fields ``names``, one column per field named after it
    (integers with gaps as pandas' nullable integers, as :func:`encode_raw` takes them)."""
    path = Path(processed_dir) / "test.parquet"
    wanted = [raw_column(name) for name in names]
    missing = sorted(set(wanted) - set(pq.read_schema(path).names))
    if missing:
        raise DatasetError(f"{path}: no column(s) {missing} (rule: the test split holds the raw"
                           " values of every field; rebuild the dataset with this grmodel version)")
    table = pq.read_table(path, columns=wanted)
    if max_rows is not None:
        table = table.slice(0, max_rows)
    frame = arrow_to_pandas(table)
    return frame.rename(columns=dict(zip(wanted, names)))


def arrow_to_pandas(table: pa.Table | pa.RecordBatch) -> pd.DataFrame:
    """A table as pandas, integer columns as nullable integers: an integer column with gaps
    stays integer (numpy would make it float64, which an integer vocabulary refuses)."""
    return table.to_pandas(types_mapper=_NULLABLE_INTEGERS.get)


_NULLABLE_INTEGERS = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
}


# ------------------------------------------------------------------------------- encoders
# How each field's raw values become ids, written beside the splits as ENCODERS_FILE and
# copied into every model trained on them, so that a model can encode raw inputs itself:
# ``{"format": ENCODERS_FORMAT, "fields": {name: {"values": [...], "kind": "int" | "float" |
# "str"} | {"edges": [...]}}}``; ``values`` are the training vocabulary in id order (id
# FIRST_KNOWN_ID + position), ``edges`` the inner quantile bucket edges.

ENCODERS_FILE = "encoders.json"
ENCODERS_FORMAT = "grmodel.encoders/1"


def encode(values: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    """int32 ids: 0 missing, 1 not in ``vocab`` (unseen in training), 2.. known values."""
    position = pd.Index(vocab).get_indexer(values)
    ids = np.where(position >= 0, position + FIRST_KNOWN_ID, OOV_ID).astype(np.int32)
    ids[pd.isna(values)] = MISSING_ID
    return ids


def bucketise(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """int32 ids: 0 for a missing value, else 2 + the bucket index (never 1: every number has
    a bucket)."""
    ids = (np.searchsorted(edges, values, side="right") + FIRST_KNOWN_ID).astype(np.int32)
    ids[~np.isfinite(values)] = MISSING_ID
    return ids


def vocabulary_record(vocab: np.ndarray) -> dict[str, Any]:
    """A vocabulary as JSON: its values and their kind (what raw inputs must match)."""
    kind = {"i": "int", "u": "int", "f": "float"}.get(vocab.dtype.kind)
    if kind is None:  # an object array (e.g. a column with missing values): by its values
        types = {type(v) for v in vocab.tolist()}
        kind = ("int" if types <= {int} else "float" if types <= {int, float}
                else "str" if types <= {str} else "other")
    values = vocab.tolist() if kind != "other" else [str(v) for v in vocab]
    return {"kind": kind, "values": values}


def encode_raw(frame: pd.DataFrame, schema: FeatureSchema, encoders: dict[str, Any],
               source: str = "<frame>") -> pd.DataFrame:
    """``frame`` with each feature column's raw values replaced by the model's ids, encoded
    as the ingest encoded the training rows (unseen values -> OOV_ID, missing -> MISSING_ID)."""
    fields = encoders.get("fields", {})
    out = frame.copy(deep=False)
    for spec in schema.fields:
        if spec.name not in frame.columns:
            raise DatasetError(f"{source}: missing feature columns {[spec.name]}"
                               " (rule: every feature column of the model)")
        column = frame[spec.name]
        encoder = fields.get(spec.name)
        if encoder is None:
            raise DatasetError(f"{source}: the model has no encoder for {spec.name!r}"
                               " (rule: --raw-ids needs the model's encoders.json)")
        if "edges" in encoder:
            if not pd.api.types.is_numeric_dtype(column.dtype):
                raise DatasetError(f"{source}: column {spec.name!r} has dtype {column.dtype}"
                                   " (rule: raw values of a bucketed field are numbers)")
            out[spec.name] = bucketise(column.to_numpy(dtype=np.float64, na_value=np.nan),
                                       np.asarray(encoder["edges"], dtype=np.float64))
            continue
        if len(column) and column.isna().all():  # no value at all fits any vocabulary
            out[spec.name] = np.full(len(column), MISSING_ID, dtype=np.int32)
            continue
        kind = encoder["kind"]
        dtype_fits = {
            "int": pd.api.types.is_integer_dtype(column.dtype),
            "float": pd.api.types.is_numeric_dtype(column.dtype)
            and not pd.api.types.is_bool_dtype(column.dtype),
            "str": pd.api.types.is_string_dtype(column.dtype)
            and column.dropna().map(type).eq(str).all(),
        }.get(kind, False)
        if not dtype_fits:
            raise DatasetError(f"{source}: column {spec.name!r} has dtype {column.dtype}"
                               f" (rule: raw values of {spec.name!r} are {kind} like the"
                               " training vocabulary)")
        vocab = np.asarray(encoder["values"], dtype=object if kind == "str" else None)
        values = column.to_numpy(dtype=object if kind == "str" else None)
        if kind == "float":
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        out[spec.name] = encode(values, vocab)
    return out


def check_encoders(encoders: dict[str, Any], schema: FeatureSchema, source: str) -> None:
    """Each encoder gives exactly its field's cardinality (else the file is not this model's)."""
    if encoders.get("format") != ENCODERS_FORMAT:
        raise DatasetError(f"{source}: format {encoders.get('format')!r}, expected"
                           f" {ENCODERS_FORMAT!r}")
    fields = encoders.get("fields", {})
    for spec in schema.fields:
        encoder = fields.get(spec.name, {})
        size = (FIRST_KNOWN_ID + len(encoder["edges"]) + 1 if "edges" in encoder
                else FIRST_KNOWN_ID + len(encoder.get("values", [])))
        if size != spec.cardinality:
            raise DatasetError(f"{source}: the encoder of {spec.name!r} gives {size} ids, the"
                               f" model has {spec.cardinality} (rule: encoders of the model's data)")


def read_encoders(directory: str | Path) -> dict[str, Any] | None:
    """``directory/encoders.json`` (None when the directory has none)."""
    path = Path(directory) / ENCODERS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def read_manifest(processed_dir: str | Path) -> dict[str, Any]:
    path = Path(processed_dir) / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"{path}: not found (rule: a processed dataset has a manifest)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def read_split(
    processed_dir: str | Path, split: str, max_rows: int | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Read one split of a processed dataset (or some of its columns) as a DataFrame."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(processed_dir) / f"{split}.parquet"
    if not path.is_file():
        raise DatasetError(f"{path}: not found (rule: every split is present)")
    if columns is None:
        frame = pd.read_parquet(path)
    else:
        missing = sorted(set(columns) - set(pq.read_schema(path).names))
        if missing:
            raise DatasetError(f"{path}: no column(s) {missing} (rule: the split has them)")
        frame = pd.read_parquet(path, columns=columns)
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


# Models compute in float32: a label beyond its range is infinite there.
LABEL_MAX = float(np.finfo(np.float32).max)
LABEL_RULE = f"label non-negative, finite and at most {LABEL_MAX:.3g} (float32)"


def label_array(frame: pd.DataFrame, column: str = LABEL_COLUMN, source: str = "<frame>") -> np.ndarray:
    """The label column as float64, checked non-negative, finite and within float32."""
    if column not in frame.columns:
        raise DatasetError(f"{source}: missing label column {column!r}")
    y = frame[column].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(y) | (y < 0) | (y > LABEL_MAX)
    if bad.any():
        raise DatasetError(
            f"{source}: column {column!r} has {int(bad.sum())} values that are negative, not"
            f" finite or too large (rule: {LABEL_RULE})"
        )
    return y

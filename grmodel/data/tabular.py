"""Processed datasets from any table, and the encoding machinery every ingest shares.

The shared part: vocabularies fitted on training rows only (id 0 missing, 1 unseen, 2.. known
values in sorted order), quantile buckets for numeric fields, training-label statistics, and
``write_processed`` which writes the three split files and the manifest atomically, in row
chunks so that memory stays bounded at any size.

The generic front end: a YAML :class:`TabularSpec` names a Parquet or CSV file, user-side and
item-side categorical fields, numeric fields to bucketise, a non-negative label and the
split, so every model runs on any long-tailed regression task (e.g. lifetime value)::

    name: ltv
    source: customers.parquet        # relative to the spec file; .parquet or .csv
    label: ltv_90d
    user:
      categorical: [customer_id, country, channel]
      numeric: {age: 10}             # column: number of quantile buckets
    item:
      categorical: [first_category]
    user_key: customer_id            # written as user_id_raw (default: first user field)
    item_key: first_category         # written as item_id_raw (default: first item field)
    timestamp: signup_ts             # optional: numeric seconds or a datetime column
    duration: null                   # optional: a duration in seconds (else NaN)
    oracle: null                     # optional: the label's true conditional median given
                                     # the features (generated data), written to the test
                                     # split as oracle_median
    split: {kind: random, valid_fraction: 0.1, test_fraction: 0.1, seed: 2024}
    # kind: random | chronological (needs timestamp) | column: {kind: column, column: NAME},
    #       the column NAME holds train / valid (or validation, val) / test
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from grmodel import __version__
from grmodel.atomic import atomic_directory, write_json_atomic
from grmodel.data import splits
from grmodel.data.io import (
    DataSpecError,
    RawDataError,
    check_unique_names,
    read_csv,
    sha256_file,
)
from grmodel.features import (
    ENCODERS_FILE,
    ENCODERS_FORMAT,
    FEW_SPLIT_ROWS,
    FIRST_KNOWN_ID,
    FORMAT,
    LABEL_COLUMN,
    MISSING_ID,
    SPLITS,
    FeatureSchema,
    FieldSpec,
    bucketise,
    encode,
    vocabulary_record,
)

log = logging.getLogger(__name__)

LABEL_QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)
# Rows per Parquet row group of a processed split: small enough that the streaming trainer's
# shards and shuffle mix many of them (grmodel/data/streaming.py), large enough to read fast.
ROW_GROUP_ROWS = 65_536
RESERVED_COLUMNS = ("label", "duration_s", "timestamp", "user_id_raw", "item_id_raw",
                    "oracle_median", "oracle_mean")


# --------------------------------------------------------------------------------- encoding


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

    def rows(self, rows: np.ndarray) -> np.ndarray:
        return self.ids[rows] if self.index is None else self.ids[self.index[rows]]


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
                        vocabulary_record(vocab))


def bucket_field(name: str, side: str, values: np.ndarray, fit_rows: np.ndarray,
                 n_buckets: int, index: np.ndarray | None = None, optional: bool = True
                 ) -> EncodedField:
    """Quantile buckets fitted on the fitting rows' values."""
    edges = quantile_edges(values[fit_rows], n_buckets)
    spec = FieldSpec(name, side, FIRST_KNOWN_ID + len(edges) + 1,  # type: ignore[arg-type]
                     mask_column=f"{name}_mask" if optional else None)
    fitted = {"buckets": len(edges) + 1, "edges": [float(e) for e in edges]}
    return EncodedField(spec, bucketise(values, edges), index, fitted,
                        {"edges": fitted["edges"]})


# ---------------------------------------------------------------------------------- writing


def write_processed(
    out_dir: str | Path,
    fields: list[EncodedField],
    columns: Callable[[np.ndarray], dict[str, np.ndarray]],
    split_rows: dict[str, np.ndarray],
    manifest: dict[str, Any],
    test_columns: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
    chunk_rows: int = 1_000_000,
    row_group_rows: int = ROW_GROUP_ROWS,
) -> dict[str, Any]:
    """Write ``<split>.parquet`` for each split and ``manifest.json``, all or nothing.

    ``columns(rows)`` gives the non-feature columns (label, duration_s, ...) of those rows;
    ``test_columns`` adds columns to the test split only (the oracle). Rows are encoded
    ``chunk_rows`` at a time and stored in row groups of ``row_group_rows`` (all full but the
    last of each split): the unit the streaming trainer reads, shards and shuffles.
    """
    if row_group_rows < 1:
        raise ValueError(f"write_processed: row_group_rows={row_group_rows} must be >= 1")
    # Whole row groups per chunk, so that chunk boundaries leave no short groups behind.
    chunk_rows = max(row_group_rows, chunk_rows // row_group_rows * row_group_rows)
    with atomic_directory(out_dir) as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        # Parquet encoding is single-threaded per file: two files at a time use both cores.
        futures = {
            split: pool.submit(_write_split, tmp / f"{split}.parquet", split_rows[split], fields,
                               columns, test_columns if split == "test" else None, chunk_rows,
                               row_group_rows)
            for split in SPLITS
        }
        written = {split: future.result() for split, future in futures.items()}
        manifest = write_manifest(tmp, fields, manifest, written)
    return manifest


def write_manifest(directory: Path, fields: list[EncodedField], manifest: dict[str, Any],
                   written: dict[str, list[str]]) -> dict[str, Any]:
    """Write ``encoders.json`` and ``manifest.json`` (the ingest's ``manifest`` plus the
    contract's fields) into ``directory``; return the manifest. ``written``: each split's
    columns."""
    schema = FeatureSchema(tuple(f.spec for f in fields))
    manifest = {
        "format": FORMAT,
        "grmodel_version": __version__,
        **manifest,
        "features": schema.to_dict(),
        "encoders": {f.spec.name: {"cardinality": f.spec.cardinality, **f.fitted}
                     for f in fields},
        "columns": written,
    }
    write_json_atomic(directory / ENCODERS_FILE, {"format": ENCODERS_FORMAT, "fields": {
        f.spec.name: f.encoder for f in fields}})
    write_json_atomic(directory / "manifest.json", manifest)
    return manifest


def split_writer(path: Path | str, schema: pa.Schema, masks: list[str],
                 filesystem: Any = None) -> pq.ParquetWriter:
    """The Parquet writer of a processed split: zstd, dictionary pages for id columns only
    (not masks, which zstd packs, nor floats)."""
    dictionary = [f.name for f in schema if f.name not in masks and not pa.types.is_floating(f.type)]
    return pq.ParquetWriter(path, schema, compression="zstd", compression_level=1,
                            use_dictionary=dictionary, filesystem=filesystem)


def _write_split(path: Path, rows: np.ndarray, fields: list[EncodedField],
                 columns: Callable[[np.ndarray], dict[str, np.ndarray]],
                 extra: Callable[[np.ndarray], dict[str, np.ndarray]] | None,
                 chunk_rows: int, row_group_rows: int) -> list[str]:
    writer = None
    try:
        # At least one pass, so that an empty split still gets a file with the schema.
        for lo in range(0, max(len(rows), 1), chunk_rows):
            part = rows[lo: lo + chunk_rows]
            data: dict[str, np.ndarray] = {}
            positions: dict[int, np.ndarray] = {}  # row -> entity, once per shared index
            for f in fields:
                if f.index is None:
                    data[f.spec.name] = f.ids[part]
                else:
                    if id(f.index) not in positions:
                        positions[id(f.index)] = f.index[part]
                    data[f.spec.name] = f.ids[positions[id(f.index)]]
            masks = [f.spec.mask_column for f in fields if f.spec.mask_column]
            for f in fields:
                if f.spec.mask_column:
                    data[f.spec.mask_column] = (data[f.spec.name] != MISSING_ID).astype(np.uint8)
            data.update(columns(part))
            if extra is not None:
                data.update(extra(part))
            table = pa.table(data)
            if writer is None:
                writer = split_writer(path, table.schema, masks)
            writer.write_table(table, row_group_size=row_group_rows)
    finally:
        if writer is not None:
            writer.close()
    return list(data)


# ------------------------------------------------------------------------------ tabular spec


@dataclass
class SideSpec:
    categorical: list[str] = field(default_factory=list)
    numeric: dict[str, int] = field(default_factory=dict)  # column -> quantile buckets

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]


@dataclass
class SplitSpec:
    kind: str = "random"  # random | chronological | column
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 2024
    column: str | None = None  # kind=column: values train / valid (validation, val) / test


@dataclass
class TabularSpec:
    """A generic long-tailed regression dataset (see the module docstring for the YAML)."""

    name: str
    source: str
    label: str
    user: SideSpec
    item: SideSpec
    user_key: str | None = None
    item_key: str | None = None
    timestamp: str | None = None
    duration: str | None = None
    oracle: str | None = None  # generated data: the label's conditional median (the MAE floor)
    split: SplitSpec = field(default_factory=SplitSpec)
    chunk_rows: int = 1_000_000
    base_dir: str = "."  # where a relative ``source`` is resolved (the spec file's folder)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base_dir: str | Path = ".") -> TabularSpec:
        def build(kind: type, values: Any, where: str) -> Any:
            if not isinstance(values, dict):
                raise DataSpecError(f"dataset spec: {where} must be a mapping")
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = sorted(set(values) - names)
            if unknown:
                raise DataSpecError(f"dataset spec: unknown key(s) {unknown} in {where}")
            return values

        top = dict(build(cls, raw, "the top level"))
        for key in ("name", "source", "label", "user", "item"):
            if top.get(key) in (None, "", {}):
                raise DataSpecError(f"dataset spec: {key!r} is required")
        top["user"] = SideSpec(**build(SideSpec, top["user"], "user"))
        top["item"] = SideSpec(**build(SideSpec, top["item"], "item"))
        top["split"] = SplitSpec(**build(SplitSpec, top.get("split") or {}, "split"))
        top.setdefault("base_dir", str(base_dir))
        spec = cls(**top)
        spec.validate()
        return spec

    @classmethod
    def from_yaml(cls, path: str | Path) -> TabularSpec:
        path = Path(path)
        if not path.is_file():
            raise DataSpecError(f"{path}: dataset spec not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise DataSpecError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}) (rule: a"
                                " dataset spec is a UTF-8 YAML file)") from None
        except yaml.YAMLError as exc:
            raise DataSpecError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(raw or {}, base_dir=path.parent)

    def validate(self) -> None:
        for side, spec in (("user", self.user), ("item", self.item)):
            if not spec.columns:
                raise DataSpecError(f"dataset spec: {side} needs at least one field")
            for column, buckets in spec.numeric.items():
                if not isinstance(buckets, int) or buckets < 2:
                    raise DataSpecError(
                        f"dataset spec: {side}.numeric.{column}: bucket count must be an"
                        " integer >= 2")
        names = [*self.user.columns, *self.item.columns]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DataSpecError(f"dataset spec: field(s) {repeated} appear more than once")
        clash = sorted(set(names) & set(RESERVED_COLUMNS)) + sorted(
            n for n in names if n.endswith("_mask"))
        if clash:
            raise DataSpecError(f"dataset spec: field name(s) {clash} are reserved")
        if self.oracle and self.oracle in (*names, self.label):
            raise DataSpecError(f"dataset spec: oracle column {self.oracle!r} is a feature or the"
                                " label (rule: the oracle is neither)")
        if self.split.kind not in ("random", "chronological", "column"):
            raise DataSpecError(f"dataset spec: split.kind {self.split.kind!r}: expected random,"
                                " chronological or column")
        if self.split.kind == "chronological" and not self.timestamp:
            raise DataSpecError("dataset spec: split.kind chronological needs 'timestamp'")
        if self.split.kind == "column" and not self.split.column:
            raise DataSpecError("dataset spec: split.kind column needs split.column")
        if self.split.kind != "column":
            splits.check_fractions(self.split.valid_fraction, self.split.test_fraction)

    @property
    def source_path(self) -> Path:
        return Path(self.base_dir) / self.source


def build_tabular(spec: str | Path | TabularSpec, out_dir: str | Path) -> dict[str, Any]:
    """Ingest the table a spec names into the processed-dataset contract; return the
    manifest."""
    if not isinstance(spec, TabularSpec):
        spec = TabularSpec.from_yaml(spec)
    path = spec.source_path
    frame = _read_table(path, spec)
    n = len(frame)

    label = frame[spec.label].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(label) | (label < 0)
    if bad.any():
        raise RawDataError(f"{path}: column {spec.label!r} has {int(bad.sum())} missing,"
                           " negative or infinite values (rule: label non-negative and finite)")
    timestamp = (_seconds(frame[spec.timestamp], path, spec.timestamp) if spec.timestamp
                 else np.full(n, np.nan))
    duration = (frame[spec.duration].to_numpy(dtype=np.float64) if spec.duration
                else np.full(n, np.nan))
    oracle = None
    if spec.oracle:
        oracle = frame[spec.oracle].to_numpy(dtype=np.float64)
        if (~np.isfinite(oracle) | (oracle < 0)).any():
            raise RawDataError(f"{path}: column {spec.oracle!r} has missing, negative or infinite"
                               " values (rule: the oracle median is non-negative and finite)")

    if spec.split.kind == "column":
        codes = _codes_from_column(frame[spec.split.column], path, spec.split.column)
    elif spec.split.kind == "chronological":
        codes = splits.chronological_split(timestamp, spec.split.valid_fraction,
                                           spec.split.test_fraction)
    else:
        codes = splits.random_split(n, spec.split.valid_fraction, spec.split.test_fraction,
                                    spec.split.seed)
    train = codes == splits.TRAIN
    if not train.any():
        raise RawDataError(f"{path}: the split leaves no training rows (rule: train non-empty)")

    fields: list[EncodedField] = []
    for side, side_spec in (("user", spec.user), ("item", spec.item)):
        for column in side_spec.categorical:
            fields.append(categorical_field(column, side, frame[column].to_numpy(), train))
        for column, buckets in side_spec.numeric.items():
            values = frame[column].to_numpy(dtype=np.float64)
            fields.append(bucket_field(column, side, values, train, buckets))

    user_raw = frame[spec.user_key or spec.user.columns[0]].to_numpy()
    item_raw = frame[spec.item_key or spec.item.columns[0]].to_numpy()

    def columns(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {LABEL_COLUMN: label[rows], "duration_s": duration[rows],
                "timestamp": timestamp[rows], "user_id_raw": user_raw[rows],
                "item_id_raw": item_raw[rows]}

    ordered_by = timestamp if spec.split.kind == "chronological" else None
    split_rows = splits.rows_by_split(codes, ordered_by)
    warnings = plausibility_warnings(path, label[train], split_rows)
    manifest = {
        "dataset": spec.name,
        "source": {"path": str(path), "rows": n, "sha256": sha256_file(path)},
        "options": dataclasses.asdict(spec),
        "label": {"mode": spec.label, "unit": "label", "column": LABEL_COLUMN,
                  "source_column": spec.label, "train_stats": label_stats(label[train])},
        "duration_available": spec.duration is not None,
        "splits": _split_summary(split_rows, codes, spec.split.kind),
        "oracle": ({"present": True, "source": f"column {spec.oracle!r}", "unit": "label",
                    "columns": ["oracle_median"]} if oracle is not None else
                   {"present": False, "reason": "the spec names no oracle column"}),
        "warnings": warnings,
    }

    def oracle_columns(rows: np.ndarray) -> dict[str, np.ndarray]:
        assert oracle is not None
        return {"oracle_median": oracle[rows]}

    result = write_processed(out_dir, fields, columns, split_rows, manifest,
                             oracle_columns if oracle is not None else None,
                             chunk_rows=spec.chunk_rows)
    log.info("built %s: %s", out_dir, {k: len(v) for k, v in split_rows.items()})
    return result


def plausibility_warnings(path: Path, train_label: np.ndarray,
                          split_rows: dict[str, np.ndarray]) -> list[str]:
    """What builds but is likely a mistake, logged and returned for the manifest: a split of
    fewer than FEW_SPLIT_ROWS rows (its metrics are noise), a constant training label."""
    warnings = [f"{path}: the {name} split has {len(rows)} rows (rule: at least"
                f" {FEW_SPLIT_ROWS:,} rows per split)"
                for name, rows in split_rows.items() if len(rows) < FEW_SPLIT_ROWS]
    if len(train_label) and train_label.min() == train_label.max():
        warnings.append(f"{path}: the training label is constant ({train_label[0]:g}) (rule: a"
                        " label that varies; a model of it collapses to that constant)")
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


def split_rows_summary(split_rows: dict[str, np.ndarray]) -> dict[str, int]:
    return {name: int(len(rows)) for name, rows in split_rows.items()}


def _split_summary(split_rows: dict[str, np.ndarray], codes: np.ndarray, kind: str
                   ) -> dict[str, Any]:
    return {"kind": kind, "rows": split_rows_summary(split_rows),
            "dropped_rows": int((codes == splits.DROPPED).sum())}


def _read_table(path: Path, spec: TabularSpec) -> pd.DataFrame:
    """The spec's columns from a Parquet or CSV file, with clear errors for missing ones."""
    wanted = [*spec.user.columns, *spec.item.columns, spec.label]
    wanted += [c for c in (spec.user_key, spec.item_key, spec.timestamp, spec.duration,
                           spec.oracle, spec.split.column) if c]
    wanted = list(dict.fromkeys(wanted))
    numeric = [*spec.user.numeric, *spec.item.numeric, spec.label,
               *([c for c in (spec.duration, spec.oracle) if c])]
    if not path.is_file():
        raise RawDataError(f"{path}: file not found (rule: the spec's source exists)")
    if path.suffix == ".parquet":
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError) as exc:
            raise RawDataError(f"{path}: not a readable Parquet file: {exc}"
                               " (rule: a well-formed Parquet file)") from None
        check_unique_names(path, names, wanted)
        missing = [c for c in wanted if c not in names]
        if missing:
            raise RawDataError(f"{path}: missing column(s) {missing} (rule: the spec's columns;"
                               f" found {names})")
        frame = pq.read_table(path, columns=wanted).to_pandas()
        if frame.empty:
            raise RawDataError(f"{path}: no data rows (rule: a non-empty table)")
    elif path.suffix == ".csv":
        kinds = {c: ("float" if c in numeric else "str") for c in wanted}
        if spec.timestamp:
            kinds[spec.timestamp] = "auto"
        frame = read_csv(path, kinds, null_strings=True).to_pandas()
    else:
        raise DataSpecError(f"{path}: source must be a .parquet or .csv file")
    for column in numeric:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise RawDataError(f"{path}: column {column!r} has type {frame[column].dtype}"
                               " (rule: numeric)")
    return frame


def _seconds(column: pd.Series, path: Path, name: str) -> np.ndarray:
    """A timestamp column as float seconds since the epoch (NaN where missing)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        seconds = column.astype("datetime64[ns]").astype(np.int64) / 1e9
        return np.where(column.isna(), np.nan, seconds)
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64)
    raise RawDataError(f"{path}: column {name!r} has type {column.dtype} (rule: timestamp is"
                       " numeric seconds or a datetime)")


def _codes_from_column(column: pd.Series, path: Path, name: str) -> np.ndarray:
    values = column.astype("string").str.strip().str.lower()
    codes = np.full(len(values), splits.DROPPED, dtype=np.int8)
    names = {**{split: split for split in splits.SPLIT_CODES}, **splits.SPLIT_ALIASES}
    for value, split in names.items():
        codes[(values == value).fillna(False).to_numpy()] = splits.SPLIT_CODES[split]
    bad = codes == splits.DROPPED
    if bad.any():
        example = column[bad].iloc[0]
        raise RawDataError(f"{path}: column {name!r} has {int(bad.sum())} values such as"
                           f" {example!r} (rule: one of train, valid, test; validation and val"
                           " mean valid)")
    return codes

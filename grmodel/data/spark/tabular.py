"""A tabular dataset spec (grmodel/data/tabular.py) built with Spark: the same processed
dataset as ``build_tabular``, from a Parquet file, a CSV file or a directory of Parquet files
(partitioned input, e.g. ``date=2024-01-01/part-0.parquet``: its partition columns are
recorded in the manifest and may be named in the spec like any column).

Vocabularies are the sorted distinct training values (Spark's distinct, fitted by the pandas
path's ``vocabulary``); numeric buckets are exact quantiles from value counts while the
distinct values fit the driver, else Spark's approxQuantile with a stated relative error;
rows are encoded by pandas UDFs over the pandas path's ``encode`` and ``bucketise``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from grmodel.atomic import atomic_directory
from grmodel.counted import APPROX_RELATIVE_ERROR, MAX_DISTINCT, quantiles
from grmodel.data import splits
from grmodel.data.encoding import EncodedField, vocabulary
from grmodel.data.io import DataSpecError, RawDataError, found
from grmodel.data.processed import ROW_GROUP_ROWS, write_manifest
from grmodel.data.spark.frames import (
    CODE,
    HASH_DRAW,
    PERMUTATION_DRAW,
    POSITION,
    ROW,
    TIME_RANK,
    hash_codes,
    lookup,
    missing,
    parquet_with_position,
    with_position,
    with_time_rank,
)
from grmodel.data.spark.labels import label_stats
from grmodel.data.spark.session import spark_session
from grmodel.data.spark.write import LAYOUTS, write_split
from grmodel.data.storage import Location, location
from grmodel.data.tabular import (
    DURATION_RULE,
    TabularSpec,
    dropped_warning,
    plausibility_warnings,
    source_files,
)
from grmodel.data.windows import (
    PARTITION_KEY,
    Window,
    day_of,
    epoch_day,
    resolve_window,
    window_entry,
)
from grmodel.features import (
    FIRST_KNOWN_ID,
    LABEL_COLUMN,
    LABEL_MAX,
    LABEL_RULE,
    MISSING_ID,
    SPLITS,
    FieldSpec,
    bucketise,
    encode,
    raw_arrow_type,
    raw_column,
    vocabulary_record,
)

log = logging.getLogger(__name__)

DAY = "_day"  # a row's day for a forward split, days since 1970-01-01 (tabular.row_days)



def build_tabular_spark(spec: str | Path | TabularSpec, out_dir: str | Path,
                        spark: SparkSession | None = None, layout: str = "file",
                        exact_distinct_max: int = MAX_DISTINCT) -> dict[str, Any]:
    """Ingest the table a spec names with Spark into the processed-dataset contract; return
    the manifest (``build_tabular``'s plus an ``engine`` entry). A numeric field or the label
    with more than ``exact_distinct_max`` distinct training values gets approxQuantile's
    quantiles instead of exact ones (the manifest's ``engine.statistics`` says which)."""
    if not isinstance(spec, TabularSpec):
        spec = TabularSpec.from_yaml(spec)
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    spark = spark or spark_session()
    path = location(spec.source_path)
    frame, partitions, hashes = _read_table(spark, path, spec)
    n = frame.count()
    if n == 0:
        raise RawDataError(f"{path}: no data rows (rule: a non-empty table)")
    _check_nonnegative(frame, path, spec.label, f"(rule: {LABEL_RULE})",
                       "missing, negative, infinite or too large", high=LABEL_MAX)
    if spec.duration:
        _check_nonnegative(frame, path, spec.duration, f"(rule: {DURATION_RULE})",
                           "missing, negative or infinite")
    if spec.oracle:
        _check_nonnegative(frame, path, spec.oracle, "(rule: the oracle median is non-negative"
                           " and finite)", "missing, negative or infinite", count=False)
    frame, split_draw, window = _with_codes(frame, spec, path, n)
    train = F.col(CODE) == splits.TRAIN
    frame = frame.persist()
    if frame.filter(train).limit(1).count() == 0:
        raise RawDataError(f"{path}: the split leaves no training rows (rule: train non-empty)")

    fields: list[EncodedField] = []
    methods: dict[str, str] = {}
    for side, side_spec in (("user", spec.user), ("item", spec.item)):
        for column in side_spec.categorical:
            values = frame.filter(train).select(column).distinct().toPandas()[column].to_numpy()
            vocab = vocabulary(values, np.ones(len(values), bool))
            fields.append(_field(column, side, vocab_record=vocab))
            frame = frame.withColumn(f"{column}__id", _encode_udf(vocab)(F.col(column)))
        for column, buckets in side_spec.numeric.items():
            edges, methods[column] = _edges(frame.filter(train), column, buckets,
                                                    exact_distinct_max)
            fields.append(_field(column, side, edges=edges))
            frame = frame.withColumn(f"{column}__id", _bucket_udf(edges)(F.col(column)))
    label_train_stats, methods[LABEL_COLUMN] = label_stats(frame.filter(train), spec.label,
                                                               exact_distinct_max)

    counts = {int(r[CODE]): int(r["count"]) for r in frame.groupBy(CODE).count().collect()}
    rows = {name: counts.get(code, 0) for name, code in splits.SPLIT_CODES.items()}
    low, high = label_train_stats["min"], label_train_stats["max"]
    warnings = plausibility_warnings(path, np.array([low, high]) if low == high else np.array([]),
                                     {name: range(rows[name]) for name in SPLITS})
    dropped = dropped_warning(path, counts.get(splits.DROPPED, 0), n, spec.split.kind)
    if dropped:
        warnings.append(dropped)
    manifest = {
        "dataset": spec.name,
        "source": {"path": str(path), "rows": n,
                   "sha256": path.sha256() if path.kind() == "file" else None,
                   **({"partitions": hashes} if hashes else {})},
        "options": dataclasses.asdict(spec),
        "label": {"mode": spec.label, "unit": "label", "column": LABEL_COLUMN,
                  "source_column": spec.label, "train_stats": label_train_stats},
        "duration_available": spec.duration is not None,
        "splits": {"kind": spec.split.kind, "rows": rows,
                   "dropped_rows": counts.get(splits.DROPPED, 0)},
        "oracle": ({"present": True, "source": f"column {spec.oracle!r}", "unit": "label",
                    "columns": ["oracle_median"]} if spec.oracle else
                   {"present": False, "reason": "the spec names no oracle column"}),
        "warnings": warnings,
        **({"window": window_entry(window, {r[DAY]: r["count"] for r in frame.filter(
            F.col(CODE) != splits.DROPPED).groupBy(DAY).count().collect()})} if window else {}),
        "engine": {"name": "spark", "version": spark.version, "layout": layout,
                   "split_draw": split_draw, "partition_columns": partitions,
                   "statistics": methods},
    }

    user_key = spec.user_key or spec.user.columns[0]
    item_key = spec.item_key or spec.item.columns[0]
    raw_types = {name: _numpy_kind(frame.schema[name].dataType) for name in (user_key, item_key)}
    columns = {f.spec.name: "int32" for f in fields}
    columns.update({f.spec.mask_column: "uint8" for f in fields if f.spec.mask_column})
    columns.update({LABEL_COLUMN: "float64", "duration_s": "float64", "timestamp": "float64",
                    "user_id_raw": raw_types[user_key], "item_id_raw": raw_types[item_key]})
    selected = frame.select(
        *[F.col(f"{f.spec.name}__id").alias(f.spec.name) for f in fields],
        *[(F.col(f"{f.spec.name}__id") != MISSING_ID).cast("int").alias(f.spec.mask_column)
          for f in fields if f.spec.mask_column],
        F.col(spec.label).cast("double").alias(LABEL_COLUMN),
        (F.col(spec.duration).cast("double") if spec.duration else F.lit(float("nan")))
        .alias("duration_s"),
        F.coalesce(F.col("_seconds"), F.lit(float("nan"))).alias("timestamp"),
        F.col(user_key).alias("user_id_raw"), F.col(item_key).alias("item_id_raw"),
        *[_raw_value(f, frame) for f in fields],
        *([F.col(spec.oracle).cast("double").alias("oracle_median")] if spec.oracle else []),
        CODE, ROW, "_seconds")
    masks = [f.spec.mask_column for f in fields if f.spec.mask_column]
    chronological = spec.split.kind == "chronological"
    with atomic_directory(out_dir) as tmp:
        written = {}
        for name, code in splits.SPLIT_CODES.items():
            part_columns: dict[str, Any] = dict(columns)
            if name == "test":
                part_columns.update({raw_column(f.spec.name): raw_arrow_type(f.encoder)
                                     for f in fields})
            if name == "test" and spec.oracle:
                part_columns["oracle_median"] = "float64"
            order = [F.col("_seconds"), F.col(ROW)] if chronological else [F.col(ROW)]
            part = with_position(selected.filter(F.col(CODE) == code), POSITION, order)
            written[name] = write_split(part, POSITION, tmp, name, part_columns, masks,
                                        ROW_GROUP_ROWS, layout)
            part.unpersist()
        manifest = write_manifest(tmp, fields, manifest, written)
    frame.unpersist()
    log.info("built %s with Spark: %s", out_dir, rows)
    return manifest


def _read_table(spark: SparkSession, path: Location, spec: TabularSpec
                ) -> tuple[DataFrame, list[str], dict[str, str]]:
    """The spec's columns with a row number (file order) and ``_seconds`` (the timestamp as
    float seconds); the partition columns of a partitioned directory and the content hash of
    each partition read (``tabular.source_files``: a forward split reads its window's).
    ``path`` is local or an object-storage URI: Spark reads it, the driver lists it and reads
    Parquet footers."""
    wanted = [*spec.user.columns, *spec.item.columns, spec.label]
    wanted += [c for c in (spec.user_key, spec.item_key, spec.timestamp, spec.duration,
                           spec.oracle, spec.split.column) if c]
    wanted = list(dict.fromkeys(wanted))
    numeric = [*spec.user.numeric, *spec.item.numeric, spec.label,
               *([c for c in (spec.duration, spec.oracle) if c])]
    partitions: list[str] = []
    hashes: dict[str, str] = {}
    kind = path.kind()
    if kind == "directory" or path.suffix == ".parquet":
        if kind == "directory":
            files, hashes = source_files(path, spec)
            partitions = [part.split("=")[0] for part in files[0].relative_parts(path)
                          if "=" in part]
        elif kind == "missing":
            raise RawDataError(f"{path}: file not found (rule: the spec's source exists)")
        else:
            files = [path]
        names = spark.read.parquet(*[f.uri for f in files]).columns if not partitions else \
            spark.read.option("basePath", path.uri).parquet(path.uri).columns
        missing_columns = [c for c in wanted if c not in names]
        if missing_columns:
            raise RawDataError(f"{path}: missing column(s) {missing_columns} (rule: the spec's"
                               f" columns; {found(names, wanted)})")
        if partitions:
            frame = (spark.read.option("basePath", path.uri).parquet(*[f.uri for f in files])
                     .withColumn("_f", F.input_file_name()))
            day = ([PARTITION_KEY] if spec.split.kind == "forward" and PARTITION_KEY in partitions
                   and PARTITION_KEY not in wanted else [])
            frame = with_position(frame.select(*wanted, *day, "_f"), ROW,
                                  [F.col("_f")]).drop("_f")
        else:
            frame = parquet_with_position(spark, files, wanted, ROW)
    elif path.suffix == ".csv":
        if kind != "file":
            raise RawDataError(f"{path}: file not found (rule: the spec's source exists)")
        schema = T.StructType([T.StructField(c, T.DoubleType() if c in numeric else T.StringType())
                               for c in spark.read.option("header", True).csv(path.uri).columns])
        frame = with_position(spark.read.option("header", True).schema(schema).csv(path.uri)
                              .select(*wanted), ROW)
    else:
        raise DataSpecError(f"{path}: source must be a .parquet or .csv file (or a directory of"
                            " Parquet files)")
    for column in numeric:
        kind = frame.schema[column].dataType
        if not isinstance(kind, T.NumericType):
            raise RawDataError(f"{path}: column {column!r} has type {kind.simpleString()}"
                               " (rule: numeric)")
    return (frame.withColumn("_seconds", _seconds(frame, spec.timestamp, path)), partitions,
            hashes)


def _seconds(frame: DataFrame, column: str | None, path: Location) -> Column:
    if not column:
        return F.lit(None).cast("double")
    kind = frame.schema[column].dataType
    if isinstance(kind, T.TimestampType | T.TimestampNTZType):
        return F.unix_micros(F.col(column).cast("timestamp")) / F.lit(1e6)
    if isinstance(kind, T.NumericType):
        return F.col(column).cast("double")
    raise RawDataError(f"{path}: column {column!r} has type {kind.simpleString()} (rule:"
                       " timestamp is numeric seconds or a datetime)")


def _check_nonnegative(frame: DataFrame, path: Location, column: str, rule: str, what: str,
                       count: bool = True, high: float = float("inf")) -> None:
    bad = frame.filter(missing(column) | (F.abs(F.col(column)) == float("inf"))
                       | (F.col(column) < 0) | (F.col(column) > high)).count()
    if bad:
        counted = f"{bad} " if count else ""
        raise RawDataError(f"{path}: column {column!r} has {counted}{what} values {rule}")


def _with_codes(frame: DataFrame, spec: TabularSpec, path: Location, n: int
                ) -> tuple[DataFrame, str, Window | None]:
    """Each row's split code, as build_tabular assigns it; how it was drawn; the forward
    split's window (else None)."""
    kind = spec.split.kind
    if kind == "forward":
        frame = frame.withColumn(DAY, _day(frame, path))
        present = [day_of(int(r[DAY])) for r in frame.select(DAY).distinct().collect()
                   if r[DAY] is not None]
        window = resolve_window(spec.split.as_of, spec.split.window_days, present)
        first, valid, test = (float(epoch_day(d))
                              for d in (window.first_day, window.valid_day, window.as_of))
        day = F.col(DAY)
        code = (F.when((day >= first) & (day < valid), splits.TRAIN)
                .when(day == valid, splits.VALID).when(day == test, splits.TEST)
                .otherwise(splits.DROPPED))
        return frame.withColumn(CODE, code.cast("int")), "none: split by day", window
    if kind == "column":
        value = F.lower(F.trim(F.col(spec.split.column).cast("string")))
        names = {**{s: s for s in splits.SPLIT_CODES}, **splits.SPLIT_ALIASES}
        code = F.lit(splits.DROPPED)
        for text, split in names.items():
            code = F.when(value == text, splits.SPLIT_CODES[split]).otherwise(code)
        frame = frame.withColumn(CODE, code)
        bad = frame.filter(F.col(CODE) == splits.DROPPED)
        found = bad.agg(F.count("*").alias("n"), F.min_by(spec.split.column, ROW).alias("x")).first()
        if found["n"]:
            raise RawDataError(f"{path}: column {spec.split.column!r} has {found['n']} values such"
                               f" as {found['x']!r} (rule: one of train, valid, test; validation"
                               " and val mean valid)")
        return frame, "none: the split column", None
    if kind == "random" and spec.split.draw == "hash":
        return hash_codes(frame, ROW, CODE, spec.split.valid_fraction, spec.split.test_fraction,
                          spec.split.seed), HASH_DRAW, None
    if kind == "random":
        codes = splits.random_split(n, spec.split.valid_fraction, spec.split.test_fraction,
                                    spec.split.seed)
        return lookup(frame, ROW, codes, CODE), PERMUTATION_DRAW, None
    timed = ~missing("_seconds")
    frame, n_timed = with_time_rank(frame, timed, "_seconds")
    n_valid, n_test = splits.held_out(n_timed, spec.split.valid_fraction, spec.split.test_fraction)
    rank = F.col(TIME_RANK)
    code = (F.when(rank.isNull(), splits.DROPPED).when(rank < n_timed - n_valid - n_test, splits.TRAIN)
            .when(rank < n_timed - n_test, splits.VALID).otherwise(splits.TEST))
    return (frame.withColumn(CODE, code.cast("int")), "none: split by time rank (distributed sort)",
            None)


def _day(frame: DataFrame, path: Location) -> Column:
    """``tabular.row_days`` in Spark: the ``date=`` partition's day, else the timestamp's UTC
    day (days since 1970-01-01, as doubles)."""
    if PARTITION_KEY in frame.columns:
        day = F.to_date(F.col(PARTITION_KEY).cast("string"))
        return F.datediff(day, F.to_date(F.lit("1970-01-01"))).cast("double")
    if frame.filter(~missing("_seconds")).limit(1).count() == 0:
        raise DataSpecError(f"{path}: split.kind forward needs day partitions ({PARTITION_KEY}="
                            "YYYY-MM-DD folders) or a 'timestamp' column")
    return F.floor(F.col("_seconds") / F.lit(86_400.0)).cast("double")


def _field(name: str, side: str, vocab_record: np.ndarray | None = None,
           edges: np.ndarray | None = None) -> EncodedField:
    """The field's spec, manifest entry and encoder, as categorical_field / bucket_field make
    them (ids are Spark's, so none are kept here)."""
    if vocab_record is not None:
        spec = FieldSpec(name, side, FIRST_KNOWN_ID + len(vocab_record),  # type: ignore[arg-type]
                         mask_column=f"{name}_mask")
        return EncodedField(spec, np.empty(0, np.int32), None,
                            {"known_values": len(vocab_record)}, vocabulary_record(vocab_record))
    assert edges is not None
    spec = FieldSpec(name, side, FIRST_KNOWN_ID + len(edges) + 1,  # type: ignore[arg-type]
                     mask_column=f"{name}_mask")
    fitted = {"buckets": len(edges) + 1, "edges": [float(e) for e in edges]}
    return EncodedField(spec, np.empty(0, np.int32), None, fitted, {"edges": fitted["edges"]})


def _raw_value(field: EncodedField, frame: DataFrame) -> Column:
    """The field's source column as the test split keeps it (features.raw_arrow_type)."""
    kind = raw_arrow_type(field.encoder)
    column = F.col(field.spec.name)
    if pa.types.is_string(kind) and not isinstance(frame.schema[field.spec.name].dataType,
                                                     T.StringType):
        column = column.cast("string")  # a vocabulary of other values (booleans): as text
    return column.alias(raw_column(field.spec.name))


def _edges(train: DataFrame, column: str, n_buckets: int, exact_distinct_max: int
           ) -> tuple[np.ndarray, str]:
    """encoding.quantile_edges of the training values: exact from value counts, else
    approxQuantile."""
    finite = train.filter(~missing(column)).select(F.col(column).cast("double").alias(column))
    grouped = finite.groupBy(column).count()
    if grouped.limit(exact_distinct_max + 1).count() <= exact_distinct_max:
        table = grouped.toPandas()
        if table.empty:
            return np.empty(0), "exact: no finite training values"
        q = quantiles(table[column].to_numpy(np.float64), table["count"].to_numpy(np.int64),
                      np.arange(1, n_buckets) / n_buckets)
        return np.unique(q), "exact: quantiles from value counts"
    q = finite.approxQuantile(column, list(np.arange(1, n_buckets) / n_buckets),
                              APPROX_RELATIVE_ERROR)
    return np.unique(np.asarray(q, np.float64)), (
        f"approximate: approxQuantile, relative rank error {APPROX_RELATIVE_ERROR:g}")


def _encode_udf(vocab: np.ndarray) -> Any:
    @F.pandas_udf("int")
    def ids(values: pd.Series) -> pd.Series:
        return pd.Series(encode(values.to_numpy(), vocab))

    return ids


def _bucket_udf(edges: np.ndarray) -> Any:
    @F.pandas_udf("int")
    def ids(values: pd.Series) -> pd.Series:
        return pd.Series(bucketise(values.to_numpy(dtype=np.float64, na_value=np.nan), edges))

    return ids


def _numpy_kind(kind: T.DataType) -> str:
    if isinstance(kind, T.IntegralType):
        return "int64"
    if isinstance(kind, T.FractionalType):
        return "float64"
    return "object"

"""Row-level Spark helpers: typed CSV reads, dense row positions, rule checks that name the
file, column and rule as the pandas path does, per-row lookups in driver-side arrays, and the
seeded hash split computed per partition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from grmodel.data import splits
from grmodel.data.io import RawDataError, found, read_header
from grmodel.data.storage import Location

# monotonically_increasing_id() puts the partition index above bit 33 and the row's place in
# its partition below.
_PARTITION_SHIFT = 33
# How a split was drawn, as the manifest's engine entry says.
# Working columns the Spark paths add: global row index, split code, time rank, output position.
ROW, CODE, TIME_RANK, POSITION = "_row", "_code", "_trank", "_pos"
PERMUTATION_DRAW = ("numpy's seeded draw on the driver (the pandas path's own function): one"
                    " int8 code per row is shipped to the executors")
HASH_DRAW = ("splits.hash_split (a seeded splitmix64 hash of each row's global index; the pandas"
             " path's own function) in a pandas UDF per partition: nothing row-sized on the"
             " driver")
_KINDS = {"int": T.DoubleType(), "float": T.DoubleType(), "str": T.StringType()}


def read_csv(spark: SparkSession, path: Location, kinds: dict[str, str]) -> DataFrame:
    """The named columns of a CSV file with a header, numbers as double (as the pandas path
    reads them), checked against the header first so that a missing column is one clear line."""
    header = read_header(path)
    missing = [name for name in kinds if name not in header]
    if missing:
        raise RawDataError(f"{path}: missing column(s) {missing} (rule: the file's columns;"
                           f" {found(header, kinds)})")
    schema = T.StructType([T.StructField(name, _KINDS[kinds[name]] if name in kinds
                                         else T.StringType()) for name in header])
    frame = (spark.read.option("header", True).option("mode", "FAILFAST")
             .option("nanValue", "nan").schema(schema).csv(str(path)))
    return frame.select(*kinds)


def with_position(frame: DataFrame, name: str, order: list[Column] | None = None) -> DataFrame:
    """``frame`` with a dense 0-based position in ``order`` (else in the frame's own order:
    file order for a scan), persisted so that the positions stay fixed.

    Distributed: each row's place in its partition plus the rows of the partitions before it
    (one small count per partition), never one partition holding every row. Both steps are
    kept on local disk, not in the heap: each is read once or twice right after, and in memory
    the blocks of a 34M-row ingest filled a 4 GB local-mode JVM (bench/bench_ingest.py --sweep).
    """
    if order is not None:
        frame = frame.orderBy(*order)
    frame = frame.withColumn("_mid", F.monotonically_increasing_id()).persist(
        StorageLevel.DISK_ONLY)
    part = F.shiftright(F.col("_mid"), _PARTITION_SHIFT)
    counts = {int(row["p"]): int(row["count"])
              for row in frame.groupBy(part.alias("p")).count().collect()}
    offsets, total = {}, 0
    for index in sorted(counts):
        offsets[index] = total
        total += counts[index]
    spark = frame.sparkSession
    offset_frame = spark.createDataFrame([(p, o) for p, o in offsets.items()] or [(0, 0)],
                                         "p long, o long")
    placed = (frame.withColumn("p", part)
              .join(F.broadcast(offset_frame), "p")
              .withColumn(name, F.col("o") + (F.col("_mid") - F.shiftleft(F.col("p"), _PARTITION_SHIFT)))
              .drop("_mid", "p", "o")
              .persist(StorageLevel.DISK_ONLY))
    placed.count()
    frame.unpersist()
    return placed


def parquet_with_position(spark: SparkSession, paths: list[Location], columns: list[str],
                          name: str) -> DataFrame:
    """Parquet files' ``columns`` (partition columns of a partitioned directory included) with
    each row's position: file after file in ``paths`` order, row after row. From Parquet's
    metadata (file path, row index), not from the order Spark schedules file pieces in."""
    offsets, total = {}, 0
    for path in paths:
        offsets[path.spark_file_uri()] = total
        with path.open() as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    offset_of = F.create_map(*[item for uri, start in offsets.items()
                               for item in (F.lit(uri), F.lit(start))])
    frame = spark.read.parquet(*[p.uri for p in paths]).select(
        *columns, F.col("_metadata.file_path").alias("_file"),
        F.col("_metadata.row_index").alias("_in"))
    uri = F.regexp_replace(F.col("_file"), "^file:/(?!/)", "file:///")
    return frame.withColumn(name, offset_of[uri] + F.col("_in")).drop("_file", "_in")


def with_time_rank(frame: DataFrame, timed: Column, time: str) -> tuple[DataFrame, int]:
    """``frame`` with TIME_RANK: each ``timed`` row's 0-based place in (``time``, ROW) order,
    null for the other rows; and how many rows are ranked."""
    ranked = with_position(frame.filter(timed), TIME_RANK, [F.col(time), F.col(ROW)])
    n_timed = ranked.count()
    rest = frame.filter(~timed).withColumn(TIME_RANK, F.lit(None).cast("long"))
    return ranked.unionByName(rest), n_timed


def check_rules(frame: DataFrame, path: Location, rules: list[tuple[str, Column, str]],
                order: str) -> None:
    """Raise for the first failed rule ``(column, bad, rule)``, naming the file, the column,
    how many values break it and the first such value in ``order``; one pass over the rows."""
    if not rules:
        return
    aggregates = []
    for k, (column, bad, _) in enumerate(rules):
        aggregates.append(F.sum(bad.cast("long")).alias(f"n{k}"))
        aggregates.append(F.min_by(F.col(column), F.when(bad, F.col(order))).alias(f"x{k}"))
    found = frame.agg(*aggregates).first()
    for k, (column, _, rule) in enumerate(rules):
        count = found[f"n{k}"] or 0
        if count:
            example = found[f"x{k}"]
            example = np.float64("nan") if example is None else (
                np.float64(example) if isinstance(example, float) else example)
            raise RawDataError(f"{path}: column {column!r} has {count} value(s) such as"
                               f" {example!r} (rule: {rule})")


def missing(column: str) -> Column:
    """Null or NaN: a missing number (CSV gaps read as null here, NaN in pandas)."""
    return F.col(column).isNull() | F.isnan(F.col(column))


def lookup(frame: DataFrame, position: str, values: np.ndarray, name: str) -> DataFrame:
    """``frame`` with ``name = values[position]``: a driver-side array (one small entry per
    row position, e.g. a split code) shipped once to every executor."""
    spark = frame.sparkSession
    shipped = spark.sparkContext.broadcast(np.ascontiguousarray(values))
    kind = {"i": "int", "u": "int", "f": "double", "b": "boolean"}[values.dtype.kind]

    @F.pandas_udf(kind)
    def at(rows: pd.Series) -> pd.Series:
        return pd.Series(shipped.value[rows.to_numpy()])

    return frame.withColumn(name, at(F.col(position)))


def hash_codes(frame: DataFrame, position: str, name: str, valid_fraction: float,
               test_fraction: float, seed: int) -> DataFrame:
    """``frame`` with ``name = splits.hash_split(position, ...)``, computed by the executors
    on each partition's row positions (the global 0-based row numbers the pandas path splits
    by), so both engines give every row the same code."""

    @F.pandas_udf("int")
    def codes(rows: pd.Series) -> pd.Series:
        return pd.Series(splits.hash_split(rows.to_numpy(np.int64), valid_fraction,
                                           test_fraction, seed).astype(np.int32))

    return frame.withColumn(name, codes(F.col(position)))

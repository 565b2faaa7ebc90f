"""KuaiRec 2.0 ingest on Spark: the raw CSV files -> the processed-dataset contract, equal to
``grmodel.data.kuairec.ingest.ingest_kuairec``'s output (tests/data/spark/ checks it).

Spark does what grows with the interactions: reading and checking the matrices, duplicates,
the splits, per-entity aggregates, the label, the joins of entity ids onto rows, the oracle,
the counts of the manifest and the Parquet files. The driver holds one row per user and per
video (and the side files, which are per entity too) and fits their encoders with the pandas
path's own functions.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from grmodel.atomic import atomic_directory
from grmodel.counted import MAX_DISTINCT
from grmodel.data import splits, windows
from grmodel.data.encoding import EncodedField, categorical_field
from grmodel.data.io import RawDataError, sha256_file
from grmodel.data.kuairec import ingest as pandas_ingest
from grmodel.data.kuairec.fields import (
    daily_fields,
    duration_field_from_sums,
    label_info,
    tag_fields,
    user_fields,
)
from grmodel.data.kuairec.ingest import IngestConfig
from grmodel.data.kuairec.layout import RawLayout, raw_layout
from grmodel.data.kuairec.readers import sources_record
from grmodel.data.kuairec.schema import (
    DAY_MS,
    MATRIX_COLUMNS,
    ORACLE_COLUMNS,
    ORACLE_FILE,
    UTC_PLUS_8_MS,
)
from grmodel.data.processed import write_manifest
from grmodel.data.spark.frames import (
    CODE,
    HASH_DRAW,
    PERMUTATION_DRAW,
    POSITION,
    ROW,
    TIME_RANK,
    check_rules,
    hash_codes,
    lookup,
    missing,
    read_csv,
    with_position,
    with_time_rank,
)
from grmodel.data.spark.labels import label_stats
from grmodel.data.spark.session import spark_session
from grmodel.data.spark.write import LAYOUTS, write_split
from grmodel.data.storage import Location, location
from grmodel.data.windows import day_of, resolve_window, window_entry
from grmodel.features import (
    LABEL_COLUMN,
    MISSING_ID,
    OOV_ID,
    SPLITS,
    raw_arrow_type,
    raw_column,
)

log = logging.getLogger(__name__)

DAY = "_day"  # a row's day, days since 1970-01-01 (the pandas path's ``day``)



def ingest_kuairec_spark(raw_dir: str | Path, out_dir: str | Path,
                         config: IngestConfig | None = None, spark: SparkSession | None = None,
                         layout: str = "file", exact_distinct_max: int = MAX_DISTINCT
                         ) -> dict[str, Any]:
    """Read a KuaiRec 2.0 directory with Spark and write the processed dataset to ``out_dir``
    (all or nothing); return its manifest. ``layout``: ``file`` (one Parquet file per split,
    what every consumer reads) or ``parts`` (a directory of part files per split, which the
    streaming trainer reads). The manifest is the pandas path's plus an ``engine`` entry."""
    config = config or IngestConfig()
    config.validate()
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    spark = spark or spark_session()
    raw = location(raw_dir)  # a local folder or an object-storage URI
    source = raw_layout(raw, config.split, config.as_of, config.window_days)
    with ThreadPoolExecutor(max_workers=1) as pool:
        digests = {name: pool.submit(sha256_file, file) for name, file in source.files().items()}
        users, item_ids, item_tags, daily = pandas_ingest.read_side_files(
            source.side, source.optional, config)
        rows, raw_summary = _read_interactions(spark, source, config.dedupe)
        sources = sources_record(source.files(), digests)

    window = source.window
    if config.split == "forward" and window is None:  # the flat layout: the rows' days
        present = [int(r[DAY]) for r in rows.select(DAY).distinct().collect()
                   if r[DAY] is not None]
        window = resolve_window(config.as_of, config.window_days, [day_of(d) for d in present])
    rows, split_info = _with_split_codes(rows, config, window)
    train = F.col(CODE) == splits.TRAIN
    user_values, user_train = _entities(rows, "user_id", train)
    items = (rows.groupBy("video_id")
             .agg(F.max(train.cast("int")).alias("train"),
                  F.sum(F.when(train, F.col("video_duration")).otherwise(0.0)).alias("train_ms"),
                  F.sum(train.cast("long")).alias("train_count"),
                  F.sum("video_duration").alias("all_ms"), F.count("*").alias("all_count"))
             .toPandas().sort_values("video_id"))
    item_values = items["video_id"].to_numpy().astype(np.int64)
    item_train = items["train"].to_numpy() > 0

    # The pandas path's own encoders, on the per-entity tables (no row index: Spark joins).
    user_encoded = [categorical_field("user_id", "user", user_values, user_train, None,
                                      optional=False)]
    user_encoded += user_fields(users, user_values, user_train, None, config.user_fields,
                                config.unknown_as_missing)
    item_fields = [categorical_field("item_id", "item", item_values, item_train, None,
                                     optional=False)]
    item_fields += tag_fields(item_ids, item_tags, item_values, item_train, None)
    item_fields.append(duration_field_from_sums(
        items["train_ms"].to_numpy(), items["train_count"].to_numpy(), items["all_ms"].to_numpy(),
        items["all_count"].to_numpy(), item_train, None, config.duration_buckets))
    if daily is not None:
        item_fields += daily_fields(daily, config.daily_fields, item_values, item_train, None)
    fields = [*user_encoded, *item_fields]

    spark_ = rows.sparkSession
    rows = (rows.join(F.broadcast(_entity_table(spark_, "user_id", user_values, user_encoded)),
                      "user_id")
            .join(F.broadcast(_entity_table(spark_, "video_id", item_values, item_fields)),
                  "video_id"))
    rows = _with_label(rows, config.label_mode)
    label_entry = label_info(config.label_mode)
    label_entry["train_stats"], stats_method = label_stats(rows.filter(train), LABEL_COLUMN,
                                                            exact_distinct_max)

    counts = (rows.groupBy(CODE).agg(
        F.count("*").alias("rows"),
        F.sum((F.col("user_id_id") == OOV_ID).cast("long")).alias("oov_user_rows"),
        F.sum((F.col("item_id_id") == OOV_ID).cast("long")).alias("oov_item_rows"),
        F.sum(missing("timestamp").cast("long")).alias("nan_timestamp_rows")).collect())
    by_code = {int(r[CODE]): r for r in counts}
    per_split = {name: {key: int(by_code[code][key]) if code in by_code else 0
                        for key in ("rows", "oov_user_rows", "oov_item_rows",
                                    "nan_timestamp_rows")}
                 for name, code in splits.SPLIT_CODES.items()}
    protocol, nan_policy = pandas_ingest.split_protocol(config, window, source.days is not None)
    nan_total = sum(int(r["nan_timestamp_rows"]) for r in counts)
    oracle_info = pandas_ingest.oracle_info(source.optional, config.label_mode)
    split_entry = {
        "kind": config.split, "protocol": protocol, "seed": config.seed,
        "rows": {name: per_split[name]["rows"] for name in SPLITS},
        "per_split": per_split,
        "dropped_rows": int(by_code[splits.DROPPED]["rows"]) if splits.DROPPED in by_code else 0,
        "nan_timestamp_rows": {"total": nan_total, "policy": nan_policy},
    }
    manifest = pandas_ingest.kuairec_manifest(
        source, config, sources, raw_summary, label_entry, split_entry,
        (user_values, users, item_values, item_ids), oracle_info,
        _window_entry(rows, window))
    manifest["engine"] = {"name": "spark", "version": spark_.version, "layout": layout,
                          "split_draw": split_info, "label_train_stats": stats_method,
                          "row_group_rows": config.row_group_rows}

    columns = _split_columns(fields)
    masks = [f.spec.mask_column for f in fields if f.spec.mask_column]
    ordered = config.split in ("chronological", "forward")
    with atomic_directory(out_dir) as tmp:
        written = {}
        for name, code in splits.SPLIT_CODES.items():
            part = rows.filter(F.col(CODE) == code)
            part_columns: dict[str, Any] = dict(columns)
            if name == "test":
                part_columns.update({raw_column(f.spec.name): raw_arrow_type(f.encoder)
                                     for f in fields})
            if name == "test" and oracle_info["present"]:
                part = _with_oracle(spark_, part, source.side_file(ORACLE_FILE),
                                    config.label_mode)
                part_columns.update(oracle_median="float64", oracle_mean="float64")
            order = [F.col("timestamp"), F.col(ROW)] if ordered else [F.col(ROW)]
            part = with_position(_select(part, fields, raw=name == "test"), POSITION, order)
            written[name] = write_split(part, POSITION, tmp, name, part_columns, masks,
                                        config.row_group_rows, layout)
            part.unpersist()
        manifest = write_manifest(tmp, fields, manifest, written)
    rows.unpersist()
    log.info("ingested %s with Spark: %s", out_dir, manifest["splits"]["rows"])
    return manifest


def _read_interactions(spark: SparkSession, layout: RawLayout, dedupe: bool
                       ) -> tuple[DataFrame, dict[str, Any]]:
    """Every interaction file of ``layout`` as one frame (in the layout's order) with
    ``is_small``, ``DAY`` (the pandas path's ``day``) and a dense row number in file order
    (what the pandas path's row index is); duplicates counted per file and dropped when
    asked."""
    parts, summary, offset = [], {}, 0
    for name, path in layout.matrices.items():
        frame = with_position(read_csv(spark, path, MATRIX_COLUMNS), ROW)
        check_rules(frame, path, _matrix_rules(), ROW)
        first = F.min(ROW).over(_all_columns_window())
        frame = frame.withColumn("_dup", F.col(ROW) != first)
        found = frame.agg(
            F.count("*").alias("rows"), F.sum(F.col("_dup").cast("long")).alias("dup"),
            F.sum(missing("timestamp").cast("long")).alias("nan"),
            F.countDistinct("user_id").alias("users"),
            F.countDistinct("video_id").alias("videos")).first()
        duplicates = int(found["dup"] or 0)
        summary[name] = {
            "rows": int(found["rows"]),
            "exact_duplicate_rows": duplicates,
            "dropped_duplicate_rows": duplicates if dedupe else 0,
            "nan_timestamp_rows": int(found["nan"] or 0),
            "users": int(found["users"]),
            "videos": int(found["videos"]),
        }
        if dedupe and duplicates:
            frame = _renumber(frame)
        kept = int(found["rows"]) - (duplicates if dedupe else 0)
        day = (F.lit(float(layout.days[name])) if layout.days is not None else
               F.floor((F.col("timestamp") * F.lit(1000.0) + F.lit(float(UTC_PLUS_8_MS)))
                       / F.lit(float(DAY_MS))).cast("double"))
        small = layout.days is None and name == "small_matrix"
        parts.append(frame.drop("_dup").withColumn("is_small", F.lit(small))
                     .withColumn(DAY, day).withColumn(ROW, F.col(ROW) + F.lit(offset)))
        offset += kept
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.unionByName(part)
    return merged, summary


def _renumber(frame: DataFrame) -> DataFrame:
    """The rows that are no duplicate, numbered again densely in their old order."""
    kept = frame.filter(~F.col("_dup")).withColumnRenamed(ROW, "_old")
    return with_position(kept, ROW, [F.col("_old")]).drop("_old")


def _all_columns_window() -> Any:
    return Window.partitionBy(*MATRIX_COLUMNS)


def _matrix_rules() -> list[tuple[str, Column, str]]:
    """read_matrix's rules, in its order."""
    def not_finite(name: str) -> Column:
        return missing(name) | (F.abs(F.col(name)) == float("inf"))

    rules = [(name, not_finite(name) | (F.col(name) < 0), "non-negative integer id, never missing")
             for name in ("user_id", "video_id")]
    rules += [(name, not_finite(name) | (F.col(name) < 0), "non-negative, never missing")
              for name in ("play_duration", "watch_ratio")]
    rules.append(("video_duration", not_finite("video_duration") | (F.col("video_duration") <= 0),
                  "positive milliseconds, never missing"))
    rules.append(("timestamp", F.abs(F.col("timestamp")) == float("inf"),
                  "finite seconds or missing"))
    return rules


def _with_split_codes(rows: DataFrame, config: IngestConfig, window: windows.Window | None
                      ) -> tuple[DataFrame, str]:
    """``rows`` with each row's split code, as ``ingest._split_codes`` assigns it; and how
    the seeded draws were made. ``ROW`` numbers both matrices, big first, after any dedupe:
    the pandas path's row index, which its draws (permutation or hash) are over."""
    if window is not None:  # Window.codes, per row
        first, valid, test = (float((d - day_of(0)).days)
                              for d in (window.first_day, window.valid_day, window.as_of))
        day = F.col(DAY)
        code = (F.when((day >= first) & (day < valid), splits.TRAIN)
                .when(day == valid, splits.VALID).when(day == test, splits.TEST)
                .otherwise(splits.DROPPED))
        return rows.withColumn(CODE, code.cast("int")), "none: split by day"
    if config.split == "random" or (config.split == "authors" and config.valid_mode == "random"):
        if config.split_draw == "hash":
            test = config.test_fraction if config.split == "random" else 0.0
            rows = hash_codes(rows, ROW, CODE, config.valid_fraction, test, config.seed)
            if config.split == "authors":
                rows = rows.withColumn(CODE, F.when(F.col("is_small"), F.lit(splits.TEST))
                                       .otherwise(F.col(CODE)))
            return rows, HASH_DRAW
        sizes = {bool(r["is_small"]): int(r["count"])
                 for r in rows.groupBy("is_small").count().collect()}
        n_big, n_small = sizes.get(False, 0), sizes.get(True, 0)
        if config.split == "random":
            codes = splits.random_split(n_big + n_small, config.valid_fraction,
                                        config.test_fraction, config.seed)
        else:
            is_test = np.repeat([False, True], [n_big, n_small])
            # valid_mode random reads no timestamps
            codes = splits.holdout_split(is_test, np.empty(0), config.valid_fraction, "random",
                                         config.seed)
        return lookup(rows, ROW, codes, CODE), PERMUTATION_DRAW
    timed = ~missing("timestamp")
    if config.split == "authors":  # valid_mode last: the newest big-matrix rows
        timed = timed & ~F.col("is_small")
    rows, n_timed = with_time_rank(rows, timed, "timestamp")
    rank = F.col(TIME_RANK)
    if config.split == "authors":
        n_valid = min(splits.held_out(n_big, config.valid_fraction, 0.0)[0], n_timed)
        code = (F.when(F.col("is_small"), splits.TEST).when(rank.isNull(), splits.TRAIN)
                .when(rank >= n_timed - n_valid, splits.VALID).otherwise(splits.TRAIN))
    else:
        n_valid, n_test = splits.held_out(n_timed, config.valid_fraction, config.test_fraction)
        code = (F.when(rank.isNull(), splits.DROPPED)
                .when(rank < n_timed - n_valid - n_test, splits.TRAIN)
                .when(rank < n_timed - n_test, splits.VALID).otherwise(splits.TEST))
    return rows.withColumn(CODE, code.cast("int")), "none: split by time rank (distributed sort)"


def _window_entry(rows: DataFrame, window: windows.Window | None) -> dict[str, Any] | None:
    """``ingest.window_entry`` from the per-day counts of the rows in a split."""
    if window is None:
        return None
    counts = rows.filter(F.col(CODE) != splits.DROPPED).groupBy(DAY).count().collect()
    return window_entry(window, {r[DAY]: r["count"] for r in counts})


def _entities(rows: DataFrame, key: str, train: Column) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids, whether each occurs in a training row)."""
    table = rows.groupBy(key).agg(F.max(train.cast("int")).alias("train")).toPandas()
    table = table.sort_values(key)
    return table[key].to_numpy().astype(np.int64), table["train"].to_numpy() > 0


def _entity_table(spark: SparkSession, key: str, values: np.ndarray,
                  fields: list[EncodedField]) -> DataFrame:
    """One row per entity: its raw id (as the rows hold it), each field's id and raw value."""
    table = pd.DataFrame({key: values.astype(np.float64),
                          **{f"{f.spec.name}_id": f.ids.astype(np.int32) for f in fields},
                          **{f"{f.spec.name}_rawv": f.raw for f in fields}})
    schema = T.StructType(
        [T.StructField(key, T.DoubleType())]
        + [T.StructField(f"{f.spec.name}_id", T.IntegerType()) for f in fields]
        + [T.StructField(f"{f.spec.name}_rawv", _spark_type(raw_arrow_type(f.encoder)))
           for f in fields])
    return spark.createDataFrame(table, schema)


def _spark_type(kind: pa.DataType) -> T.DataType:
    return (T.LongType() if pa.types.is_integer(kind) else T.DoubleType()
            if pa.types.is_floating(kind) else T.StringType())


def _with_label(rows: DataFrame, mode: str) -> DataFrame:
    """The label column, computed as ``fields.label_column`` does (same float64 operations)."""
    if mode == "watch_time":
        label = F.col("play_duration") / F.lit(1000.0)
    elif mode == "watch_ratio":
        label = F.col("watch_ratio")
    else:
        video = Window.partitionBy("video_id")
        rows = rows.withColumn("_low", F.min("watch_ratio").over(video)).withColumn(
            "_span", F.max("watch_ratio").over(video) - F.col("_low"))
        label = F.when(F.col("_span") > 0, (F.col("watch_ratio") - F.col("_low")) / F.col("_span")
                       ).otherwise(F.lit(0.0))
    return rows.withColumn(LABEL_COLUMN, label)


def _split_columns(fields: list[EncodedField]) -> dict[str, str]:
    """A split's columns and numpy dtypes, in the pandas path's order."""
    columns = {f.spec.name: "int32" for f in fields}
    columns.update({f.spec.mask_column: "uint8" for f in fields if f.spec.mask_column})
    columns.update({LABEL_COLUMN: "float64", "watch_ratio": "float64", "watch_time_s": "float64",
                    "duration_s": "float64", "timestamp": "float64", "user_id_raw": "int64",
                    "item_id_raw": "int64"})
    return columns


def _select(rows: DataFrame, fields: list[EncodedField], raw: bool = False) -> DataFrame:
    """A split's columns (``raw``: with each field's raw values, the test split's)."""
    ids = [F.col(f"{f.spec.name}_id").alias(f.spec.name) for f in fields]
    raws = [F.col(f"{f.spec.name}_rawv").alias(raw_column(f.spec.name)) for f in fields
            ] if raw else []
    masks = [(F.col(f"{f.spec.name}_id") != MISSING_ID).cast("int").alias(f.spec.mask_column)
             for f in fields if f.spec.mask_column]
    extra = [c for c in ("oracle_median", "oracle_mean") if c in rows.columns]
    return rows.select(
        *ids, *masks, LABEL_COLUMN, "watch_ratio",
        (F.col("play_duration") / F.lit(1000.0)).alias("watch_time_s"),
        (F.col("video_duration") / F.lit(1000.0)).alias("duration_s"),
        F.coalesce(F.col("timestamp"), F.lit(float("nan"))).alias("timestamp"),
        F.col("user_id").cast("long").alias("user_id_raw"),
        F.col("video_id").cast("long").alias("item_id_raw"), *raws, *extra, ROW)


def _with_oracle(spark: SparkSession, test: DataFrame, path: Location, mode: str) -> DataFrame:
    """Test rows with oracle_median / oracle_mean in label units (``ingest._oracle``'s rule:
    every test (user, video) has an oracle row)."""
    oracle = with_position(read_csv(spark, path, ORACLE_COLUMNS), "_orow")
    check_rules(oracle, path, [
        (name, missing(name) | (F.abs(F.col(name)) == float("inf")) | (F.col(name) < 0),
         "non-negative, finite") for name in ("oracle_median_ratio", "oracle_mean_ratio")], "_orow")
    oracle = oracle.drop("_orow")
    joined = test.join(oracle, ["user_id", "video_id"], "left")
    absent = joined.filter(F.col("oracle_median_ratio").isNull()).count()
    if absent:
        raise RawDataError(f"{path}: no oracle row for {absent} test rows (rule: the oracle covers"
                           " every (user_id, video_id) of the test split)")
    scale = F.col("video_duration") / F.lit(1000.0) if mode == "watch_time" else F.lit(1.0)
    return (joined.withColumn("oracle_median", F.col("oracle_median_ratio") * scale)
            .withColumn("oracle_mean", F.col("oracle_mean_ratio") * scale))

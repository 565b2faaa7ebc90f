"""GR's label side on Spark: the training labels counted by value (what the vocabulary and the
label state are fitted on), and label encoding as a vectorised pandas UDF over the existing
codec, written as ``tokens.parquet`` in the train split's row order."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from grmodel.codec import LabelCodec
from grmodel.counted import MAX_DISTINCT
from grmodel.data.io import DataSpecError
from grmodel.data.spark.frames import POSITION, parquet_with_position
from grmodel.data.spark.labels import value_counts
from grmodel.data.storage import location
from grmodel.data.streaming import split_paths
from grmodel.vocab import Vocabulary

# Rows per part file of tokens.parquet (one pandas frame in one Python worker).
PART_ROWS = 1 << 20


def read_split(spark: SparkSession, processed_dir: str | Path, split: str, columns: list[str],
               max_rows: int | None = None) -> DataFrame:
    """A processed split's ``columns`` with each row's position in the split (file after file,
    row after row: the order every consumer reads)."""
    frame = parquet_with_position(spark, [location(p) for p in split_paths(processed_dir, split)],
                                  columns, POSITION)
    if max_rows is not None:
        frame = frame.filter(F.col(POSITION) < max_rows)
    return frame


def train_label_counts(spark: SparkSession, processed_dir: str | Path, column: str,
                       max_rows: int | None = None, limit: int = MAX_DISTINCT
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(distinct training labels ascending, their counts), exact."""
    frame = read_split(spark, processed_dir, "train", [column], max_rows)
    counted = value_counts(frame, column, limit)
    if counted is None:
        raise DataSpecError(f"{processed_dir}/train.parquet: column {column!r} has more than"
                            f" {limit:,} distinct labels (rule: the Spark vocabulary counts"
                            " distinct labels on the driver; fit on a sample is not built)")
    return counted


def token_udf(vocab: Vocabulary, max_len: int) -> Any:
    """A pandas UDF: labels -> (value-token count, ``<sos> tokens <eos> <pad>...`` as int32),
    by ``LabelCodec.encode`` on each Arrow batch."""
    codec = LabelCodec(vocab)

    @F.pandas_udf("length int, tokens array<int>")
    def encode(labels: pd.Series) -> pd.DataFrame:
        encoded = codec.encode(labels.to_numpy(dtype=np.float64), max_len=max_len)
        return pd.DataFrame({"length": encoded.lengths.astype(np.int32),
                             "tokens": list(encoded.sequences.astype(np.int32))})

    return encode


def write_tokens(spark: SparkSession, processed_dir: str | Path, vocab: Vocabulary,
                 max_len: int, path: Path, column: str, max_rows: int | None = None
                 ) -> dict[str, Any]:
    """Encode every training label and write ``path`` (columns label, length, tokens: a
    fixed-size list of max_len + 2 int32), the pandas stage's file, in the split's row order.
    Returns rows, mean and max length."""
    frame = read_split(spark, processed_dir, "train", [column], max_rows)
    encoded: Column = token_udf(vocab, max_len)(F.col(column))
    frame = frame.select(F.col(column).alias("label"), encoded.alias("_t"), POSITION).select(
        "label", F.col("_t.length").alias("length"), F.col("_t.tokens").alias("tokens"), POSITION)
    width = max_len + 2
    schema = pa.schema([("label", pa.float64()), ("length", pa.int32()),
                        ("tokens", pa.list_(pa.int32(), width))])
    parts_dir = path.parent / f"_{path.name}.parts"
    parts_dir.mkdir(parents=True)
    target = str(parts_dir)

    def write_part(part: pd.DataFrame) -> pd.DataFrame:
        part = part.sort_values(POSITION)
        index = int(part[POSITION].iloc[0]) // PART_ROWS
        flat = pa.array(np.concatenate(part["tokens"].to_numpy()).astype(np.int32))
        table = pa.table({"label": pa.array(part["label"].to_numpy(np.float64)),
                          "length": pa.array(part["length"].to_numpy(np.int32)),
                          "tokens": pa.FixedSizeListArray.from_arrays(flat, width)}, schema=schema)
        pq.write_table(table, f"{target}/part-{index:06d}.parquet")
        return pd.DataFrame({"rows": [len(part)], "length_sum": [int(part["length"].sum())],
                             "length_max": [int(part["length"].max())]})

    done = (frame.groupBy((F.col(POSITION) / F.lit(PART_ROWS)).cast("long").alias("_part"))
            .applyInPandas(write_part, "rows long, length_sum long, length_max long").toPandas())
    with pq.ParquetWriter(path, schema) as writer:
        for part in sorted(parts_dir.glob("part-*.parquet")):
            writer.write_table(pq.read_table(part))
    shutil.rmtree(parts_dir)
    rows = int(done["rows"].sum())
    if rows == 0:
        raise DataSpecError(f"{processed_dir}/train.parquet: no training labels to encode")
    return {"rows": rows, "mean_length": float(done["length_sum"].sum() / rows),
            "max_length": int(done["length_max"].max())}

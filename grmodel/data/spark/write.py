"""Writing a processed split from Spark: part files of whole row groups, written by the
executors with the pandas path's Parquet writer, then (layout ``file``) joined into the one
``<split>.parquet`` every consumer reads, row group by row group."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from grmodel.data.processed import split_writer

# Row groups per part file: a part is one pandas frame in one Python worker (~1M rows).
PART_ROW_GROUPS = 16
LAYOUTS = ("file", "parts")


def arrow_schema(columns: dict[str, str | pa.DataType]) -> pa.Schema:
    """The Arrow schema of a split from numpy dtype names (``object``: strings) or Arrow types
    (columns with gaps: the test split's raw values)."""
    return pa.schema([(name, kind if isinstance(kind, pa.DataType) else pa.string()
                       if kind == "object" else pa.from_numpy_dtype(np.dtype(kind)))
                      for name, kind in columns.items()])


def _column(values: pd.Series, kind: str | pa.DataType) -> Any:
    """A pandas column as the split stores it: cast to its numpy dtype, or to its Arrow type
    with missing values as nulls (floats keep NaN, as the pandas engine writes them)."""
    if isinstance(kind, pa.DataType):
        return pa.array(values, type=kind, from_pandas=not pa.types.is_floating(kind))
    return values.to_numpy().astype(kind, copy=False)


def write_split(frame: DataFrame, position: str, directory: Path, split: str,
                columns: dict[str, str | pa.DataType], masks: list[str], row_group_rows: int,
                layout: str) -> list[str]:
    """Write ``frame`` (its ``columns``, cast to their numpy dtypes, in ``position`` order) as
    ``directory/<split>.parquet``: one file (layout ``file``) or a directory of part files
    (``parts``, which the streaming trainer reads). Every row group holds ``row_group_rows``
    rows but the last, as the pandas path writes them."""
    schema = arrow_schema(columns)
    part_rows = row_group_rows * PART_ROW_GROUPS
    parts_dir = directory / f"_{split}.parts" if layout == "file" else directory / f"{split}.parquet"
    parts_dir.mkdir(parents=True)
    target = str(parts_dir)
    names = list(columns)

    def write_part(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values(position)
        part = int(frame[position].iloc[0]) // part_rows
        table = pa.table({name: _column(frame[name], columns[name]) for name in names},
                         schema=schema)
        writer = split_writer(f"{target}/part-{part:06d}.parquet", schema, masks)
        try:
            writer.write_table(table, row_group_size=row_group_rows)
        finally:
            writer.close()
        return pd.DataFrame({"part": [part], "rows": [len(frame)]})

    (frame.select(*names, position)
     .groupBy((F.col(position) / F.lit(part_rows)).cast("long").alias("_part"))
     .applyInPandas(write_part, "part long, rows long")
     .collect())
    files = sorted(parts_dir.glob("part-*.parquet"))
    if not files:  # an empty split still gets a file with the schema
        empty = split_writer(parts_dir / "part-000000.parquet", schema, masks)
        empty.close()
        files = [parts_dir / "part-000000.parquet"]
    if layout == "file":
        writer = split_writer(directory / f"{split}.parquet", schema, masks)
        try:
            for path in files:
                part = pq.ParquetFile(path)
                for group in range(part.num_row_groups):
                    writer.write_table(part.read_row_group(group), row_group_size=row_group_rows)
        finally:
            writer.close()
        shutil.rmtree(parts_dir)
    return names

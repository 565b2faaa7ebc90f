"""Batch prediction over arrays, DataFrames or Parquet files, for any model in the zoo.

Inputs are strict: feature ids must be integers within the model's encoders (a float id
is refused, never truncated), or raw values that the model's own encoders map to ids. A
Parquet file is scored in chunks, so memory stays bounded at any number of rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from grmodel.atomic import atomic_file
from grmodel.distributed import autocast
from grmodel.features import DatasetError, arrow_to_pandas, encode_raw
from grmodel.models import ArrayModel, ZooModel
from grmodel.outputs import FILE_MARK, file_mark

PREDICTION_COLUMN = "prediction"
# Rows scored per chunk of a Parquet input: a few tens of MB of ids and masks at any file size.
CHUNK_ROWS = 262_144


@torch.no_grad()
def predict_arrays(
    model: ZooModel,
    ids: np.ndarray,
    mask: np.ndarray,
    batch_size: int = 4096,
    progress: bool = False,
) -> np.ndarray:
    """Predictions (float64, label units) for feature arrays from ``FeatureSchema.arrays``."""
    check_batch_size(batch_size)
    if isinstance(model, ArrayModel):  # scores the whole array in one call, on the CPU
        return model.predict_ids(ids)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty(len(ids), dtype=np.float64)
    starts = range(0, len(ids), batch_size)
    if progress:
        starts = tqdm(starts, desc="predict", unit="batch")
    use_amp = model.config.train.amp_bf16
    for start in starts:
        stop = start + batch_size
        batch_ids = torch.as_tensor(ids[start:stop], device=device, dtype=torch.long)
        batch_mask = torch.as_tensor(mask[start:stop], device=device, dtype=torch.float32)
        with autocast(device, use_amp):
            out[start:stop] = model.predict(batch_ids, batch_mask).double().cpu().numpy()
    model.train(was_training)
    return out


def predict_frame(
    model: ZooModel,
    frame: pd.DataFrame,
    batch_size: int = 4096,
    progress: bool = False,
    encoders: dict[str, Any] | None = None,
    source: str = "<frame>",
) -> np.ndarray:
    """Predictions for a DataFrame holding the model's feature columns: integer ids, or with
    ``encoders`` (the model's, ``checkpoint.load_encoders``) raw values that they encode."""
    if encoders is not None:
        frame = encode_raw(frame, model.schema, encoders, source)
    ids, mask = model.schema.arrays(frame, source)
    return predict_arrays(model, ids, mask, batch_size=batch_size, progress=progress)


def check_batch_size(batch_size: int) -> None:
    """Fails unless ``batch_size`` is a whole number >= 1 (every row is scored in some batch)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch size {batch_size!r}: out of range (rule: the batch size is a"
                         " whole number >= 1)")


def check_input(source: str | Path) -> None:
    """Fails, naming the file and the rule, unless ``source`` is a file to score."""
    if not Path(source).is_file():
        raise DatasetError(f"{source}: not found (rule: the input is a Parquet file)")


def predict_parquet(
    model: ZooModel,
    source: str | Path,
    output: str | Path,
    batch_size: int = 4096,
    chunk_rows: int = CHUNK_ROWS,
    encoders: dict[str, Any] | None = None,
    progress: bool = False,
) -> int:
    """Score a Parquet file ``chunk_rows`` at a time and write its columns plus
    ``prediction`` to ``output`` (atomically); returns the rows scored.

    Memory stays bounded by one chunk whatever the file's size: the columns are checked on the
    file's schema before any row is read, each chunk is checked, encoded and scored on its own.
    Chunks are whole batches (``chunk_rows`` rounded up to a multiple of ``batch_size``), so
    every batch holds the rows it would hold in memory and the predictions are identical.
    """
    check_batch_size(batch_size)
    chunk_rows = -(-max(chunk_rows, 1) // batch_size) * batch_size
    source, output = Path(source), Path(output)
    check_input(source)
    try:
        reader = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise DatasetError(f"{source}: not a readable Parquet file ({first}) (rule: a"
                           " well-formed Parquet file)") from None
    schema = reader.schema_arrow
    if PREDICTION_COLUMN in schema.names:
        raise DatasetError(f"{source}: already has a {PREDICTION_COLUMN!r} column (rule: the"
                           " output adds it; rename or drop the input's)")
    if encoders is None:
        model.schema.check_columns(schema.names, schema.types, str(source))
    # grmodel's mark: a later --overwrite replaces this file, never one grmodel did not write.
    mark = json.dumps(file_mark("predict")).encode()
    out_schema = schema.append(pa.field(PREDICTION_COLUMN, pa.float64())).with_metadata(
        {**(schema.metadata or {}), FILE_MARK.encode(): mark})
    total = reader.metadata.num_rows
    bar = None
    if progress:
        # Only on a terminal (disable=None), and cleared when done: a failure's message
        # stays one line.
        bar = tqdm(total=total, desc="predict", unit="row", disable=None, leave=False)
    rows = 0
    batches = reader.iter_batches(batch_size=chunk_rows)
    try:
        with atomic_file(output) as tmp, pq.ParquetWriter(tmp, out_schema) as writer:
            while (batch := _next_batch(batches, source, rows)) is not None:
                # Raw values keep their kind: an integer column with gaps stays integer.
                frame = arrow_to_pandas(batch) if encoders is not None else batch.to_pandas()
                where = f"{source} (rows {rows:,}..{rows + len(frame) - 1:,})"
                pred = predict_frame(model, frame, batch_size, encoders=encoders, source=where)
                table = pa.Table.from_batches([batch]).append_column(
                    PREDICTION_COLUMN, pa.array(pred, pa.float64()))
                writer.write_table(table.cast(out_schema))
                rows += len(frame)
                if bar is not None:
                    bar.update(len(frame))
    except OSError as exc:  # a read failure is a DatasetError: this is the output's file system
        first = (exc.strerror or str(exc)).strip().splitlines()[0][:200]
        raise OSError(exc.errno, f"{output}: cannot write ({first})") from None
    finally:
        if bar is not None:
            bar.close()
    return rows


def _next_batch(batches: Any, source: Path, rows: int) -> pa.RecordBatch | None:
    """The next chunk of the input, or None at its end; a read failure names the input."""
    try:
        return next(batches, None)
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise DatasetError(f"{source}: cannot read row {rows:,} on ({first}) (rule: a"
                           " well-formed Parquet file)") from None

"""Writing a processed dataset (the contract of grmodel/features.py): the three split files and
the manifest, atomically, in row chunks so that memory stays bounded at any size."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from grmodel import __version__
from grmodel.atomic import atomic_directory, write_json_atomic
from grmodel.data.encoding import EncodedField
from grmodel.features import (
    ENCODERS_FILE,
    ENCODERS_FORMAT,
    FORMAT,
    MISSING_ID,
    SPLITS,
    FeatureSchema,
    raw_arrow_type,
    raw_column,
)

# Rows per Parquet row group of a processed split: small enough that the streaming trainer's
# shards and shuffle mix many of them (grmodel/data/streaming.py), large enough to read fast.
ROW_GROUP_ROWS = 65_536


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
    ``test_columns`` adds columns to the test split only (the oracle), after each field's raw
    values (``raw__<field>``, features.RAW_PREFIX). Rows are encoded
    ``chunk_rows`` at a time and stored in row groups of ``row_group_rows`` (all full but the
    last of each split): the unit the streaming trainer reads, shards and shuffles.
    """
    if row_group_rows < 1:
        raise ValueError(f"write_processed: row_group_rows={row_group_rows} must be >= 1")
    # Whole row groups per chunk, so that chunk boundaries leave no short groups behind.
    chunk_rows = max(row_group_rows, chunk_rows // row_group_rows * row_group_rows)
    test_extra = _with_raw_values(fields, test_columns)
    with atomic_directory(out_dir) as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        # Parquet encoding is single-threaded per file: two files at a time use both cores.
        futures = {
            split: pool.submit(_write_split, tmp / f"{split}.parquet", split_rows[split], fields,
                               columns, test_extra if split == "test" else None, chunk_rows,
                               row_group_rows)
            for split in SPLITS
        }
        written = {split: future.result() for split, future in futures.items()}
        manifest = write_manifest(tmp, fields, manifest, written)
    return manifest


def _with_raw_values(fields: list[EncodedField],
                     extra: Callable[[np.ndarray], dict[str, np.ndarray]] | None
                     ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The test split's extra columns: each field's raw values, then ``extra``'s."""
    def columns(rows: np.ndarray) -> dict[str, Any]:
        raw = {raw_column(f.spec.name): _raw_array(f.raw_rows(rows), f.encoder)
               for f in fields if f.raw is not None}
        return raw | (extra(rows) if extra is not None else {})

    return columns


def _raw_array(values: np.ndarray, encoder: dict[str, Any]) -> Any:
    """Raw values in their encoder's kind (features.raw_arrow_type), gaps as nulls (NaN in
    floats); a vocabulary of other objects (booleans) keeps the values' own type."""
    if encoder.get("kind") == "other":
        return values
    kind = raw_arrow_type(encoder)
    return pa.array(values, type=kind, from_pandas=not pa.types.is_floating(kind))


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


def split_rows_summary(split_rows: dict[str, np.ndarray]) -> dict[str, int]:
    return {name: int(len(rows)) for name, rows in split_rows.items()}

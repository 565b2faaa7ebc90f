"""File helpers for the data layer: checked CSV reading, atomic output directories, hashing.

Every reader failure becomes a :class:`RawDataError` whose message names the file, the column
and the rule that failed, so a bad input never surfaces as a deep pandas or Arrow traceback.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from grmodel.features import DatasetError

log = logging.getLogger(__name__)

ColumnKind = Literal["int", "float", "str", "auto"]
ARROW_TYPES = {"int": pa.float64(), "float": pa.float64(), "str": pa.string()}


class RawDataError(DatasetError):
    """A bad input file: the message names the file, the column and the rule that failed."""


class DataSpecError(ValueError):
    """A generator config, ingest option or dataset spec that cannot be used."""


def found(header: list[str], wanted: Iterable[str]) -> str:
    """What an error about missing columns says of the file's header: its names when it holds
    any wanted column (the intended table, a column misnamed), else only their number. A file
    with none of them is another file (a link to a system file, say): its first line, which may
    hold anything, is never echoed."""
    if set(header) & set(wanted):
        return f"found {header}"
    return (f"none of them is in its header of {len(header)} column(s): is it the intended"
            " file?")


def sha256_file(path: str | Path) -> str:
    """The file's sha256; a ``storage.Location`` (a URI) hashes itself as it streams."""
    if not isinstance(path, str | Path):
        return path.sha256()
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_header(path: Path) -> list[str]:
    """The column names on a CSV file's first line (fails on a missing or empty file)."""
    if not path.is_file():
        raise RawDataError(f"{path}: file not found (rule: required input file)")
    with path.open("rb") as handle:  # a Path, or a storage.Location (a URI): no readline
        line = b""
        while b"\n" not in line and (block := handle.read(1 << 16)):
            line += block
    line = line.split(b"\n", 1)[0]
    try:
        first = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RawDataError(f"{path}: header line is not UTF-8 (byte {exc.start}: {exc.reason})"
                           " (rule: CSV files are UTF-8 text)") from None
    if not first.strip():
        raise RawDataError(f"{path}: empty file (rule: a CSV starts with a header line)")
    return [name.strip().strip('"') for name in first.rstrip("\r\n").split(",")]


def read_csv(
    path: Path,
    columns: dict[str, ColumnKind],
    optional: tuple[str, ...] = (),
    null_strings: bool = False,
) -> pa.Table:
    """Read the named columns of a CSV with explicit types; check names, types and emptiness.

    ``int`` columns are parsed as float64 and checked to hold whole numbers, because a column
    with missing values is often written by pandas as ``3.0``; the caller casts them once
    nulls are handled. ``auto`` columns keep Arrow's type inference (e.g. datetimes). Columns
    in ``optional`` may be absent from the file. Empty strings become nulls only with
    ``null_strings``.
    """
    header = read_header(path)
    check_unique_names(path, header, list(columns))
    missing = [c for c in columns if c not in header and c not in optional]
    if missing:
        raise RawDataError(
            f"{path}: missing column(s) {missing} (rule: required columns; {found(header, columns)})"
        )
    wanted = [c for c in columns if c in header]
    arrow_types = {c: ARROW_TYPES[columns[c]] for c in wanted if columns[c] in ARROW_TYPES}
    # A storage.Location (a URI) is read through its filesystem's stream.
    source = path if isinstance(path, str | Path) else path.open("rb")
    try:
        table = pcsv.read_csv(
            source,
            read_options=pcsv.ReadOptions(block_size=16 << 20),
            convert_options=pcsv.ConvertOptions(
                include_columns=wanted,
                column_types=arrow_types,
                strings_can_be_null=null_strings,
                quoted_strings_can_be_null=null_strings,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise RawDataError(_explain_arrow_error(path, header, exc)) from None
    finally:
        if source is not path:
            source.close()
    if table.num_rows == 0:
        raise RawDataError(f"{path}: no data rows (rule: a non-empty table)")
    for name in wanted:
        if columns[name] == "int":
            check_whole_numbers(path, name, table.column(name).to_numpy(zero_copy_only=False))
    return table


def duplicated_names(header: list[str]) -> list[str]:
    """Column names that appear more than once, in header order."""
    return [name for name in dict.fromkeys(header) if header.count(name) > 1]


def check_unique_names(path: Path, header: list[str], used: list[str]) -> None:
    """Refuse a header that repeats a column we read (which copy is meant is unknowable);
    a repeated column we do not read is only logged."""
    repeated = duplicated_names(header)
    clash = [name for name in repeated if name in used]
    if clash:
        raise RawDataError(f"{path}: column(s) {clash} appear more than once in the header"
                           " (rule: unique column names)")
    if repeated:
        log.warning("%s: column(s) %s appear more than once in the header (not read)", path,
                    repeated)


def _explain_arrow_error(path: Path, header: list[str], exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0]
    match = re.search(r"column #(\d+)", text)
    if match and int(match.group(1)) < len(header):
        column = header[int(match.group(1))]
        return f"{path}: column {column!r}: {text} (rule: values of the declared type)"
    if "Expected" in text and "columns" in text:
        return f"{path}: {text} (rule: every row has the header's columns; truncated file?)"
    return f"{path}: {text} (rule: a well-formed CSV)"


def check_whole_numbers(path: Path, column: str, values: np.ndarray) -> None:
    bad = values != np.floor(values)  # NaN compares unequal: settled below, on failure only
    if bad.any():
        bad &= ~np.isnan(values)
        check_rule(path, column, bad, "integer", values)


def check_rule(path: Path, column: str, bad: np.ndarray, rule: str, values: np.ndarray) -> None:
    """Raise naming the file, the column and ``rule`` when any entry of ``bad`` is true."""
    if bad.any():
        example = values[np.flatnonzero(bad)[0]]
        raise RawDataError(
            f"{path}: column {column!r} has {int(bad.sum())} value(s) such as {example!r}"
            f" (rule: {rule})"
        )


def column_array(table: pa.Table, name: str) -> np.ndarray:
    """A float64 or string column as a numpy array (nulls become NaN / None)."""
    return table.column(name).to_numpy(zero_copy_only=False)

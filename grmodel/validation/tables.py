"""Reading a table for validation: a CSV or Parquet file (or a frame) into a
:class:`LoadedTable`, with the reader's own findings.

Reading never raises on a bad file. A missing or empty file, duplicate header names, rows with
the wrong number of fields (a truncated file) and Parquet columns of the wrong dtype become
failed "reader" checks naming the file and the column. A CSV column whose values do not all
parse as the declared type is kept as text, so that the type expectation lists the values that
fail; the checks that need its numbers are reported as skipped.
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from grmodel.data.kuairec.schema import ColumnKind
from grmodel.validation.report import CheckResult, plain

N_SAMPLES = 5  # sample values (and rows) kept per failed check
NULL_TEXT = {"", "nan", "NaN", "NA", "N/A", "null", "NULL", "None"}
# What a value of a column read as text must look like (after trimming) to count as a number.
NUMBER_TEXT = {
    "int": r"^[-+]?\d+(\.0*)?$",  # "3.0" too: pandas writes whole numbers so beside NaNs
    "float": r"^(?i)[-+]?(\d+\.?\d*(e[-+]?\d+)?|\.\d+(e[-+]?\d+)?|inf|infinity)$",
}
ARROW_TYPES: dict[str, pa.DataType] = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}


@dataclass
class LoadedTable:
    """A table as read for validation, with the reader's own findings."""

    name: str
    path: Path | None
    frame: pd.DataFrame | None  # None when nothing could be read
    findings: list[CheckResult] = field(default_factory=list)
    # Columns whose dtype does not fit the declared kind (kept as read, e.g. raw text).
    unparsed: set[str] = field(default_factory=set)

    def info(self) -> dict[str, Any]:
        frame = self.frame
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "rows": None if frame is None else len(frame),
            "columns": [] if frame is None else [str(c) for c in frame.columns],
        }


    def why_unusable(self, name: str) -> str:
        """Why column ``name`` cannot be checked ("" if it can): missing, or not parsed."""
        if self.frame is None or name not in self.frame.columns:
            return "is missing"
        if name in self.unparsed:
            return f"has values of the wrong type (dtype {self.frame[name].dtype})"
        return ""


def _finding(
    table: str,
    expectation: str,
    rule: str,
    column: str | None = None,
    unexpected: int | None = None,
    total: int | None = None,
    samples: Iterable[Any] = (),
    note: str = "",
) -> CheckResult:
    """A failed reader check (file structure), in the same form as an expectation result."""
    return CheckResult(
        table=table,
        check_id=f"{expectation}({column})" if column else expectation,
        expectation=expectation, rule=rule, severity="error", status="failed", column=column,
        engine="reader", element_count=total, unexpected_count=unexpected,
        unexpected_percent=None if not total or unexpected is None else 100 * unexpected / total,
        samples=plain(list(samples)[:N_SAMPLES]), note=note,
    )



def read_csv_table(path: Path, columns: dict[str, ColumnKind]) -> LoadedTable:
    """Read the declared columns of a CSV (explicit types, pyarrow); never raises on bad data."""
    name = path.name
    if not path.is_file():
        finding = _finding(name, "expect_file_to_exist", f"{name} is present", note=str(path))
        return LoadedTable(name, path, None, [finding])
    header = _read_header(path)
    if not header:
        finding = _finding(name, "expect_file_to_have_a_header", "the file starts with a header"
                           " line", note="the file is empty")
        return LoadedTable(name, path, None, [finding])
    table = LoadedTable(name, path, None)
    names = _unique_names(header)
    duplicated = [h for h, n in zip(header, names) if h != n]
    if duplicated:
        table.findings.append(_finding(
            name, "expect_csv_header_names_to_be_unique", "every header name appears once",
            unexpected=len(duplicated), total=len(header), samples=duplicated,
            note="later copies were renamed (name.1, ...) and ignored",
        ))
    wanted = {c: kind for c, kind in columns.items() if c in names}
    as_text: set[str] = set()
    while True:
        bad_rows: list[Any] = []
        try:
            arrow = _arrow_read(path, names, wanted, as_text, bad_rows)
            break
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            column = _failed_column(exc, names)
            if column is None or column not in wanted or column in as_text:
                table.findings.append(_finding(
                    name, "expect_file_to_parse_as_csv", "the file is a well-formed CSV",
                    note=str(exc).strip().splitlines()[0][:300],
                ))
                return table
            as_text.add(column)  # read it again as text and list the values that fail
    if bad_rows:
        total = arrow.num_rows + len(bad_rows)
        table.findings.append(_finding(
            name, "expect_csv_rows_to_have_header_field_count",
            f"every row has the header's {len(header)} fields (a truncated file breaks this)",
            unexpected=len(bad_rows), total=total,
            samples=[_row_text(row) for row in bad_rows],
            note="those rows were left out of the other checks",
        ))
    table.frame = _to_pandas(arrow, wanted, as_text, table.unparsed)
    return table


def _row_text(row: Any) -> str:
    """A malformed row as a sample: its line number when Arrow knows it, and its text."""
    where = f"line {row.number}: " if row.number is not None else ""
    return f"{where}{row.text[:80]}"


def _read_header(path: Path) -> list[str]:
    with open(path, "rb") as handle:
        first = handle.readline(1 << 20).decode("utf-8", errors="replace").lstrip("\ufeff")
    if not first.strip():
        return []
    return next(csv.reader([first]))


def _unique_names(header: list[str]) -> list[str]:
    """Header names made unique the way pandas does it: a, a.1, a.2, ..."""
    seen: dict[str, int] = {}
    names = []
    for h in header:
        n = seen.get(h, 0)
        seen[h] = n + 1
        names.append(h if n == 0 else f"{h}.{n}")
    return names


def _arrow_read(
    path: Path, names: list[str], wanted: dict[str, ColumnKind], as_text: set[str],
    bad_rows: list[Any],
) -> pa.Table:
    lock = threading.Lock()

    def keep_bad_row(row: Any) -> str:
        with lock:
            bad_rows.append(row)
        return "skip"

    types = {c: pa.string() if c in as_text else ARROW_TYPES[k] for c, k in wanted.items()}
    # With none of the wanted columns there, read the first one as text: rows still count.
    include = list(wanted) or names[:1]
    types = types or {names[0]: pa.string()}
    return pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=32 << 20),
        parse_options=pcsv.ParseOptions(invalid_row_handler=keep_bad_row),
        convert_options=pcsv.ConvertOptions(include_columns=include, column_types=types),
    )


def _failed_column(exc: Exception, names: list[str]) -> str | None:
    """The column an Arrow conversion error names ("In CSV column #3: ...")."""
    match = re.search(r"column #(\d+)", str(exc))
    return names[int(match.group(1))] if match and int(match.group(1)) < len(names) else None


def _to_pandas(
    arrow: pa.Table, wanted: dict[str, ColumnKind], as_text: set[str], unparsed: set[str]
) -> pd.DataFrame:
    columns = {}
    for name, kind in wanted.items():
        chunked = arrow.column(name)
        if name in as_text:
            columns[name] = _coerce_text(chunked, kind)
            if columns[name].dtype == object:
                unparsed.add(name)
        elif kind == "int" and chunked.null_count:
            columns[name] = chunked.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        else:
            columns[name] = chunked.to_pandas()
    return pd.DataFrame(columns, index=pd.RangeIndex(arrow.num_rows))


def _coerce_text(text: pa.ChunkedArray, kind: ColumnKind) -> pd.Series:
    """Numbers from a text column; if some values are not numbers of ``kind``, an object
    column holding the numbers and, where parsing failed, the original text.

    Arrow kernels throughout (a regex decides what parses, then a cast): pandas' to_numeric
    takes seconds per million strings.
    """
    trimmed = pc.utf8_trim_whitespace(text)
    is_null = pc.or_(pc.is_null(trimmed), pc.is_in(trimmed, pa.array(sorted(NULL_TEXT))))
    parses = pc.fill_null(pc.match_substring_regex(trimmed, NUMBER_TEXT[kind]), False)
    bad = pc.and_(pc.invert(is_null), pc.invert(parses)).to_numpy(zero_copy_only=False)
    number = pc.cast(pc.if_else(parses, trimmed, "0"), pa.float64()).to_numpy(zero_copy_only=False)
    if kind == "int":
        number = number.astype(np.int64)
    is_null = is_null.to_numpy(zero_copy_only=False)
    if not bad.any():
        dtype = "Int64" if kind == "int" else "float64"
        return pd.Series(pd.array(number, dtype=dtype)).mask(is_null)
    mixed = number.astype(object)
    mixed[is_null] = None
    mixed[bad] = np.asarray(text.to_pandas(), dtype=object)[bad]
    return pd.Series(mixed, dtype=object)


def read_parquet_table(path: Path, columns: dict[str, ColumnKind]) -> LoadedTable:
    """Read the declared columns of a Parquet file (those present); never raises on bad data."""
    name = path.name
    if not path.is_file():
        finding = _finding(name, "expect_file_to_exist", f"{name} is present", note=str(path))
        return LoadedTable(name, path, None, [finding])
    try:
        present = set(pq.read_schema(path).names)
        frame = pq.read_table(path, columns=[c for c in columns if c in present]).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        finding = _finding(name, "expect_file_to_parse_as_parquet", "the file is valid Parquet",
                           note=str(exc).strip().splitlines()[0][:300])
        return LoadedTable(name, path, None, [finding])
    return typed_table(name, path, frame, columns)


def typed_table(
    name: str, path: Path | None, frame: pd.DataFrame, columns: dict[str, ColumnKind]
) -> LoadedTable:
    """A table whose columns each have one dtype: a failed check per column of the wrong one."""
    table = LoadedTable(name, path, frame)
    for column, kind in columns.items():
        if column in frame and not _fits(frame[column], kind):
            table.unparsed.add(column)
            table.findings.append(_finding(
                name, "expect_column_dtype_to_match_contract", f"{column} is stored as {kind}",
                column=column, samples=[str(frame[column].dtype)],
                note=f"dtype {frame[column].dtype}",
            ))
    return table


def _fits(series: pd.Series, kind: ColumnKind) -> bool:
    if kind == "int":
        return pd.api.types.is_integer_dtype(series.dtype)
    if kind == "float":
        return pd.api.types.is_float_dtype(series.dtype)
    return True

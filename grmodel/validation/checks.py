"""Checks and table suites as plain descriptions, and the builders every suite family uses.

A :class:`TableSuite` describes one table: the columns to read (with their declared types),
derived columns computed before validation (cross-column rules become one vectorised column,
e.g. the watch ratio's deviation from play/video duration), and the :class:`Check` list. A check
is one great_expectations expectation (by its snake_case name) plus the rule in words and a
severity. Checks with ``mostly < 1`` or ``severity="warning"`` are warnings: reported, never a
failed gate. Every bound of a suite family is a field of its ``*Bounds`` dataclass (raw.py,
processed.py, tokens.py) so callers can change it and the report records the values used.

Nothing here reads data or runs great_expectations; ``grmodel.validation.gx`` runs the suites.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from grmodel.data.kuairec.schema import ColumnKind

Severity = Literal["error", "warning"]

# dtype names accepted per declared kind: numpy names for plain columns, "Int64Dtype" for an
# integer column with missing values, and the Python type for values of a column that only
# partly parsed (object dtype, checked value by value).
TYPE_LISTS: dict[str, list[str]] = {
    "int": ["int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "Int64Dtype", "int"],
    "float": ["float64", "float32", "float"],
}
FLOAT_MAX = float(np.finfo(np.float64).max)  # "finite" as an upper bound (inf fails it)


@dataclass(frozen=True)
class Check:
    """One expectation on a table, with its rule in words and its severity."""

    expectation: str  # great_expectations name, e.g. "expect_column_values_to_be_between"
    kwargs: dict[str, Any]
    rule: str
    severity: Severity = "error"
    # Columns shown beside each failing sample (e.g. the durations behind a bad watch ratio).
    sample_columns: tuple[str, ...] = ()
    # Tells apart two checks of one expectation on one column (e.g. an error and a warning).
    tag: str = ""

    @property
    def column(self) -> str | None:
        """The checked column (None for a table-level check)."""
        return self.kwargs.get("column")

    @property
    def effective_severity(self) -> Severity:
        return "warning" if self.kwargs.get("mostly", 1.0) < 1.0 else self.severity

    @property
    def check_id(self) -> str:
        name = f"{self.expectation}({self.column})" if self.column else self.expectation
        return f"{name}[{self.tag}]" if self.tag else name


@dataclass(frozen=True)
class DerivedColumn:
    """A column computed from others before validation (skipped if a source is unusable)."""

    name: str
    sources: tuple[str, ...]
    compute: Callable[[pd.DataFrame], Any]


@dataclass(frozen=True)
class TableSuite:
    """Everything needed to validate one table."""

    name: str
    columns: dict[str, ColumnKind]  # columns read from the file, with declared types
    checks: tuple[Check, ...]
    derived: tuple[DerivedColumn, ...] = ()

    def __post_init__(self) -> None:
        ids = [c.check_id for c in self.checks]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"suite {self.name}: duplicate checks {duplicated}")


# ------------------------------------------------------------------------ check builders


def columns_present(columns: Sequence[str]) -> Check:
    """Every named column is in the table (others may be there too)."""
    return Check(
        "expect_table_columns_to_match_set",
        {"column_set": list(columns), "exact_match": False},
        "the table has the columns " + ", ".join(columns),
    )


def typed(column: str, kind: ColumnKind) -> Check:
    return Check(
        "expect_column_values_to_be_in_type_list",
        {"column": column, "type_list": TYPE_LISTS[kind]},
        f"{column} holds {kind} values",
    )


def not_null(column: str, mostly: float = 1.0) -> Check:
    rule = f"{column} is never missing" if mostly >= 1 else (
        f"{column} is present in at least {mostly:.0%} of rows"
    )
    kwargs: dict[str, Any] = {"column": column}
    if mostly < 1:
        kwargs["mostly"] = mostly
    return Check("expect_column_values_to_not_be_null", kwargs, rule)


def between(
    column: str,
    low: float | None,
    high: float | None,
    rule: str | None = None,
    samples: tuple[str, ...] = (),
) -> Check:
    if rule is None:
        parts = [f"{low:g} <=" if low is not None else "", column,
                 f"<= {high:g}" if high is not None else ""]
        rule = " ".join(p for p in parts if p)
    return Check(
        "expect_column_values_to_be_between",
        {"column": column, "min_value": low, "max_value": high},
        rule,
        sample_columns=samples,
    )


def in_set(column: str, values: Sequence[Any], rule: str, samples: tuple[str, ...] = ()) -> Check:
    return Check(
        "expect_column_values_to_be_in_set",
        {"column": column, "value_set": list(values)},
        rule,
        sample_columns=samples,
    )


def unique(column: str) -> Check:
    return Check("expect_column_values_to_be_unique", {"column": column}, f"{column} is unique")


def row_count(bounds: tuple[int, int]) -> Check:
    low, high = bounds
    return Check(
        "expect_table_row_count_to_be_between",
        {"min_value": low, "max_value": high},
        f"{low:,} <= rows <= {high:,}",
    )


def non_negative_finite(column: str) -> Check:
    return between(column, 0, FLOAT_MAX, f"{column} is non-negative and finite")


def column_checks(column: str, kind: ColumnKind, nullable: float = 1.0) -> list[Check]:
    """Type and (unless ``nullable`` is 0) not-null checks of one CSV column."""
    checks = [typed(column, kind)] if kind != "str" else []
    if nullable > 0:
        checks.append(not_null(column, mostly=nullable))
    return checks


def no_offending_field(column: str, rule: str, mostly: float = 1.0) -> Check:
    """A check on a :func:`first_offending_field` column: no row has an offending field."""
    kwargs: dict[str, Any] = {"column": column}
    if mostly < 1:
        kwargs["mostly"] = mostly
        rule = f"{rule} in at least {mostly:.0%} of rows"
    return Check("expect_column_values_to_be_null", kwargs, rule)


def first_offending_field(
    frame: pd.DataFrame, names: Sequence[str], offends: Callable[[pd.Series, int], Any]
) -> pd.Categorical:
    """Per row, the first of ``names`` whose value offends a rule (missing where none does).

    One vectorised column stands for one rule over many fields (e.g. every id within its
    encoder size): a single expectation instead of one per field, and its failing samples
    name the fields. ``offends(column, position)`` returns a boolean mask.
    """
    code = np.full(len(frame), -1, dtype=np.int16)
    for position in reversed(range(len(names))):
        code[np.asarray(offends(frame[names[position]], position), dtype=bool)] = position
    return pd.Categorical.from_codes(code, categories=list(names))


def float_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)


def report_kwargs(check: Check, max_items: int = 10) -> dict[str, Any]:
    """A check's arguments for the report, long value lists shortened."""
    out: dict[str, Any] = {}
    for key, value in check.kwargs.items():
        if isinstance(value, list | tuple | np.ndarray) and len(value) > max_items:
            head = ", ".join(str(v) for v in list(value)[:max_items])
            value = f"[{head}, ... ({len(value)} values)]"
        out[key] = value
    return out

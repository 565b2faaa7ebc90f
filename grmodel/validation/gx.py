"""Running a table suite with great_expectations and turning its results into
:class:`CheckResult` records.

great_expectations runs with one ephemeral context per process (no files written, progress bars
off), a pandas data source and a whole-dataframe batch per table.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from importlib.metadata import version
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.execution_engine import pandas_execution_engine

from grmodel import __version__
from grmodel.validation.checks import Check, TableSuite, report_kwargs
from grmodel.validation.report import CheckResult, ValidationReport, plain
from grmodel.validation.tables import N_SAMPLES, LoadedTable

log = logging.getLogger(__name__)

RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
# Checks that still run on a column that did not parse (the others need its numbers).
RAW_TEXT_CHECKS = ("expect_column_values_to_be_in_type_list",)


@functools.cache
def _batch_definition() -> Any:
    """A whole-dataframe batch definition in one ephemeral context (created once)."""

    # GX fingerprints every in-memory frame under this many bytes by hashing all of it (about
    # 10 s for the big matrix); the fingerprint only names the batch, which we never look up.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("grmodel").add_dataframe_asset("table")
    return asset.add_batch_definition_whole_dataframe("whole")


def _gx_version() -> str:
    return version("great_expectations")


@functools.cache
def _expectation_classes() -> dict[str, Any]:
    """great_expectations' expectation classes by lower-case name without underscores (its
    class names are not always the title-cased snake name: ExpectColumnKLDivergence...)."""
    return {name.lower(): cls for name, cls in vars(gx.expectations).items()
            if name.startswith("Expect")}


def _expectation(check: Check, index: int) -> Any:
    cls = _expectation_classes()[check.expectation.replace("_", "")]
    return cls(**check.kwargs, meta={"check_index": index})


def run_suite(table: LoadedTable, suite: TableSuite) -> list[CheckResult]:
    """Reader findings plus every check of ``suite`` on ``table`` (skipped where unusable)."""
    results = list(table.findings)
    frame = table.frame
    if frame is None:
        reason = "no table could be read from the file"
        return results + [_skipped(table.name, c, reason) for c in suite.checks]
    columns_read = [str(c) for c in frame.columns]
    frame = frame.copy(deep=False)  # derived columns must not leak into the caller's frame
    unusable = {name: table.why_unusable(name) for name in suite.columns}
    unusable = {name: why for name, why in unusable.items() if why}
    for derived in suite.derived:
        blocked = [s for s in derived.sources if s not in frame.columns or s in unusable]
        if blocked:
            why = unusable.get(blocked[0]) or "is missing"
            unusable[derived.name] = f"is derived from {blocked[0]}, which {why}"
        else:
            frame[derived.name] = derived.compute(frame)
    runnable: list[Check] = []
    for check in suite.checks:
        reason = _blocking(check, frame, unusable)
        if reason:
            results.append(_skipped(table.name, check, reason))
        else:
            runnable.append(check)
    if runnable:
        results += _run_gx(table.name, frame, runnable, columns_read)
    return results


def _blocking(check: Check, frame: pd.DataFrame, unusable: dict[str, str]) -> str:
    """Why ``check`` cannot run ("" if it can): its column is missing or did not parse."""
    name = check.column
    if name in unusable and (name not in frame.columns or check.expectation not in RAW_TEXT_CHECKS):
        return f"column {name} {unusable[name]}"
    return ""



def _run_gx(
    table_name: str, frame: pd.DataFrame, checks: list[Check], columns_read: list[str]
) -> list[CheckResult]:

    batch_definition = _batch_definition()  # first: a suite needs the current context
    # Passed whole: add_expectation compares each new expectation with all earlier ones.
    suite = gx.ExpectationSuite(
        name=table_name, expectations=[_expectation(c, i) for i, c in enumerate(checks)]
    )
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    outcome = batch.validate(suite, result_format=RESULT_FORMAT)
    by_index = {r.expectation_config.meta["check_index"]: r for r in outcome.results}
    return [
        _from_gx(table_name, check, by_index[i], frame, columns_read)
        for i, check in enumerate(checks)
    ]


def _from_gx(
    table: str, check: Check, result: Any, frame: pd.DataFrame, columns_read: list[str]
) -> CheckResult:
    details = result.result or {}
    failed_status = "warning" if check.effective_severity == "warning" else "failed"
    record = _record(table, check, "passed" if result.success else failed_status)
    exception = result.exception_info or {}
    if exception.get("raised_exception"):
        record.note = f"expectation raised: {exception.get('exception_message')}"
    record.element_count = details.get("element_count")
    record.unexpected_count = details.get("unexpected_count")
    record.unexpected_percent = details.get("unexpected_percent")
    record.observed_value = plain(details.get("observed_value"))
    if not result.success:
        record.samples = plain(details.get("partial_unexpected_list", [])[:N_SAMPLES])
        index = details.get("partial_unexpected_index_list") or []
        if check.sample_columns and index:
            shown = list(dict.fromkeys([check.column, *check.sample_columns]))
            rows = frame.loc[list(index[:N_SAMPLES]), shown]
            record.sample_rows = plain(rows.reset_index(names="row").to_dict("records"))
        if check.expectation == "expect_table_columns_to_match_set":
            missing = details.get("details", {}).get("mismatched", {}).get("missing", [])
            record.column = ", ".join(missing)
            record.samples = missing
            record.observed_value = None
            record.note = f"columns found: {columns_read[:40]}"
        elif check.column in frame and isinstance(frame[check.column].dtype, pd.CategoricalDtype):
            counts = frame[check.column].value_counts().head(N_SAMPLES)
            record.note = "by field: " + ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)
    return record


def _record(table: str, check: Check, status: str) -> CheckResult:
    return CheckResult(
        table=table, check_id=check.check_id, expectation=check.expectation, rule=check.rule,
        severity=check.effective_severity, status=status, column=check.column,
        kwargs=plain(report_kwargs(check)),
    )


def _skipped(table: str, check: Check, reason: str) -> CheckResult:
    record = _record(table, check, "skipped")
    record.note = f"not run: {reason}"
    return record



def make_report(
    suite: str, source: str, params: dict[str, Any], tables: list[dict[str, Any]],
    checks: list[CheckResult], started: float,
) -> ValidationReport:
    report = ValidationReport(
        suite=suite, source=source, params=plain(params), tables=tables,
        checks=checks, seconds=time.perf_counter() - started,
        versions={"grmodel": __version__, "great_expectations": _gx_version()},
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    log.debug("%s", report.summary())
    return report


"""Read the data, run the suites with great_expectations, collect a :class:`ValidationReport`.

Reading never raises on a bad file. A missing or empty file, duplicate header names, rows with
the wrong number of fields (a truncated file) and Parquet columns of the wrong dtype become
failed "reader" checks naming the file and the column. A CSV column whose values do not all
parse as the declared type is kept as text, so that the type expectation lists the values that
fail; the checks that need its numbers are reported as skipped.

great_expectations runs with one ephemeral context per process (no files written, progress bars
off), a pandas data source and a whole-dataframe batch per table. It is imported on first use.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from grmodel import __version__
from grmodel.codec import EncodedLabels, LabelCodec
from grmodel.data.kuairec.schema import INTERACTION_FILES, ITEM_FILE, RAW_FILES, USER_FILE, ColumnKind
from grmodel.features import SPLITS, FeatureSchema, read_manifest
from grmodel.validation.report import CheckResult, ValidationReport, plain
from grmodel.validation.suites import (
    Check,
    ProcessedBounds,
    RawBounds,
    TableSuite,
    TokenBounds,
    interaction_suite,
    item_categories_suite,
    pair_keys,
    processed_split_suite,
    report_kwargs,
    tokens_suite,
    user_features_suite,
)
from grmodel.vocab import EOS, Vocabulary

log = logging.getLogger(__name__)

N_SAMPLES = 5  # sample values (and rows) kept per failed check
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
NULL_TEXT = {"", "nan", "NaN", "NA", "N/A", "null", "NULL", "None"}
# What a value of a column read as text must look like (after trimming) to count as a number.
NUMBER_TEXT = {
    "int": r"^[-+]?\d+(\.0*)?$",  # "3.0" too: pandas writes whole numbers so beside NaNs
    "float": r"^(?i)[-+]?(\d+\.?\d*(e[-+]?\d+)?|\.\d+(e[-+]?\d+)?|inf|infinity)$",
}
ARROW_TYPES: dict[str, pa.DataType] = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
# Checks that still run on a column that did not parse (the others need its numbers).
RAW_TEXT_CHECKS = ("expect_column_values_to_be_in_type_list",)


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


# ------------------------------------------------------------------------ great_expectations


@functools.cache
def _batch_definition() -> Any:
    """A whole-dataframe batch definition in one ephemeral context (created once)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every in-memory frame under this many bytes by hashing all of it (about
    # 10 s for the big matrix); the fingerprint only names the batch, which we never look up.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("grmodel").add_dataframe_asset("table")
    return asset.add_batch_definition_whole_dataframe("whole")


def _gx_version() -> str:
    return version("great_expectations")


def _expectation(check: Check, index: int) -> Any:
    import great_expectations as gx

    class_name = "".join(part.title() for part in check.expectation.split("_"))
    return getattr(gx.expectations, class_name)(**check.kwargs, meta={"check_index": index})


def run_suite(table: LoadedTable, suite: TableSuite) -> list[CheckResult]:
    """Reader findings plus every check of ``suite`` on ``table`` (skipped where unusable)."""
    results = list(table.findings)
    frame = table.frame
    if frame is None:
        reason = "no table could be read from the file"
        return results + [_skipped(table.name, c, reason) for c in suite.checks]
    columns_read = [str(c) for c in frame.columns]
    frame = frame.copy(deep=False)  # derived columns must not leak into the caller's frame
    unusable = {name: _why_unusable(table, name) for name in suite.columns}
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


def _why_unusable(table: LoadedTable, name: str) -> str:
    if table.frame is None or name not in table.frame.columns:
        return "is missing"
    if name in table.unparsed:
        return f"has values of the wrong type (dtype {table.frame[name].dtype})"
    return ""


def _run_gx(
    table_name: str, frame: pd.DataFrame, checks: list[Check], columns_read: list[str]
) -> list[CheckResult]:
    import great_expectations as gx

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


# ---------------------------------------------------------------------------------- reading


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
    return _typed_table(name, path, frame, columns)


def _typed_table(
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


# ------------------------------------------------------------------------------- entry points


def _report(
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


def _known_ids(table: LoadedTable, column: str) -> np.ndarray | None:
    """Distinct ids of a side file, for referential checks (None if they are unusable)."""
    if _why_unusable(table, column):
        return None
    return np.unique(table.frame[column].dropna().to_numpy(dtype=np.int64))


def validate_raw_kuairec(
    raw_dir: str | Path, bounds: RawBounds | None = None, files: Sequence[str] = RAW_FILES
) -> ValidationReport:
    """Validate the raw KuaiRec ``files`` in ``raw_dir`` (default: all four). The side files
    go first, so that the interaction files are checked against their ids."""
    started = time.perf_counter()
    raw_dir, bounds = Path(raw_dir), bounds or RawBounds()
    unknown = sorted(set(files) - set(RAW_FILES))
    if unknown:
        raise ValueError(f"validate_raw_kuairec: unknown files {unknown}; expected {RAW_FILES}")
    tables, results = [], []

    def check(suite: TableSuite) -> LoadedTable:
        table = read_csv_table(raw_dir / suite.name, suite.columns)
        results.extend(run_suite(table, suite))
        tables.append(table.info())
        return table

    known_users = known_items = None
    if USER_FILE in files:
        known_users = _known_ids(check(user_features_suite(bounds)), "user_id")
    if ITEM_FILE in files:
        known_items = _known_ids(check(item_categories_suite(bounds)), "video_id")
    for name, rows in zip(INTERACTION_FILES, (bounds.big_rows, bounds.small_rows)):
        if name in files:
            check(interaction_suite(name, bounds, rows, known_users, known_items))
    return _report("raw_kuairec", str(raw_dir), bounds.to_dict(), tables, results, started)


# What each ingest split kind forbids train and test to share. The authors' protocol (big
# matrix -> train, small matrix -> test) and a random split may repeat (user, video) pairs.
SPLIT_OVERLAP_RULES = {"chronological": "time", "authors": "none", "random": "none"}


def _split_description(manifest: dict[str, Any]) -> dict[str, Any]:
    splits = manifest.get("splits")
    return splits if isinstance(splits, dict) else {}


def _overlap_rule(manifest: dict[str, Any], bounds: ProcessedBounds) -> str:
    """What train and test may not share; "auto" follows the manifest's split kind."""
    if bounds.forbid_overlap != "auto":
        return bounds.forbid_overlap
    return SPLIT_OVERLAP_RULES.get(_split_description(manifest).get("kind"), "none")


def _expected_rows(manifest: dict[str, Any], split: str) -> int | None:
    """Rows the manifest records for a split: ``splits.rows.<split>`` or ``splits.<split>``."""
    splits = _split_description(manifest)
    rows = splits.get("rows") if isinstance(splits.get("rows"), dict) else splits
    entry = rows.get(split)
    return entry if isinstance(entry, int) else None


def validate_processed(
    processed_dir: str | Path, bounds: ProcessedBounds | None = None
) -> ValidationReport:
    """Validate every split of a processed dataset against its manifest's feature schema."""
    started = time.perf_counter()
    processed_dir, bounds = Path(processed_dir), bounds or ProcessedBounds()
    manifest = read_manifest(processed_dir)
    schema = FeatureSchema.from_dict(manifest["features"])
    overlap = _overlap_rule(manifest, bounds)
    tables, results = [], []
    train_pairs, train_max_time = None, None
    for split in SPLITS:
        suite = processed_split_suite(split, schema, _expected_rows(manifest, split), bounds,
                                      overlap, train_pairs, train_max_time)
        table = read_parquet_table(processed_dir / suite.name, suite.columns)
        results += run_suite(table, suite)
        if split == "train":
            train_pairs, train_max_time = _train_keys(table)
        tables.append(table.info())
    params = {**bounds.to_dict(), "overlap_rule": overlap, "schema": schema.to_dict()}
    return _report("processed", str(processed_dir), params, tables, results, started)


def _train_keys(table: LoadedTable) -> tuple[np.ndarray | None, float | None]:
    """Train's (user, item) pair keys and last timestamp, for the overlap checks."""
    frame = table.frame
    pairs = None
    if not any(_why_unusable(table, c) for c in ("user_id_raw", "item_id_raw")):
        pairs = np.unique(pair_keys(frame))
    last = None
    if not _why_unusable(table, "timestamp") and frame["timestamp"].notna().any():
        last = float(frame["timestamp"].max())
    return pairs, last


def token_frame(
    labels: np.ndarray, vocab: Vocabulary, encoded: EncodedLabels | None = None
) -> pd.DataFrame:
    """One row per label sequence with what the token checks look at.

    Without ``encoded`` the labels are encoded here, one row per distinct scaled label (the
    sequence depends only on it); with ``encoded`` (a ``grmodel.codec.EncodedLabels`` for
    these labels) those sequences are checked as given.
    """
    codec = LabelCodec(vocab)
    labels = np.asarray(labels, dtype=np.float64).ravel()
    valid = np.isfinite(labels) & (labels >= 0)
    if encoded is None:
        # Invalid labels cannot be encoded: they stay as rows for the label checks.
        _, first = np.unique(vocab.scale(labels[valid]), return_index=True)
        labels = np.concatenate([labels[valid][first], labels[~valid]])
        rows = np.arange(first.size)
        encoded = codec.encode(labels[rows])
        seq, length = np.asarray(encoded.sequences), np.asarray(encoded.lengths)
    else:
        if len(encoded.sequences) != labels.size or len(encoded.lengths) != labels.size:
            raise ValueError(
                f"encoded labels: {len(encoded.sequences)} sequences for {labels.size} labels"
            )
        rows = np.flatnonzero(valid)
        seq = np.asarray(encoded.sequences)[rows]
        length = np.asarray(encoded.lengths)[rows]
    width = seq.shape[1]
    in_vocab = (seq.min(axis=1) >= 0) & (seq.max(axis=1) < vocab.size)
    decoded = np.full(rows.size, np.nan)
    decoded[in_vocab] = codec.decode(seq[in_vocab])
    scaled = vocab.scale(labels[rows]).astype(np.float64)
    eos_at = np.clip(length + 1, 0, width - 1)

    def per_label(values: np.ndarray, integer: bool = False) -> Any:
        out = np.full(labels.size, np.nan)
        out[rows] = values
        return pd.array(out, dtype="Int64") if integer else out

    frame = pd.DataFrame({
        "label": labels,
        "length": per_label(length, integer=True),
        "min_token": per_label(seq.min(axis=1), integer=True),
        "max_token": per_label(seq.max(axis=1), integer=True),
        "first_token": per_label(seq[:, 0], integer=True),
        "eos_after_tokens": per_label(
            (length + 1 < width) & (seq[np.arange(rows.size), eos_at] == EOS), integer=True
        ),
        "decoded": per_label(decoded),
        "relative_error": per_label(
            np.abs(decoded * vocab.label_scale - scaled) / np.maximum(scaled, 1.0)
        ),
    })
    return frame


def validate_tokens(
    labels: np.ndarray,
    vocab: Vocabulary,
    max_len: int,
    encoded: EncodedLabels | None = None,
    bounds: TokenBounds | None = None,
    source: str = "<labels>",
) -> ValidationReport:
    """Check that labels tokenise within ``max_len`` tokens of ``vocab`` and decode back within
    ``bounds.rtol`` of their scaled value (``vocab`` is a ``grmodel.vocab.Vocabulary``)."""
    started = time.perf_counter()
    bounds = bounds or TokenBounds()
    suite = tokens_suite(vocab.size, max_len, bounds)
    table = _typed_table(suite.name, None, token_frame(labels, vocab, encoded), suite.columns)
    results = run_suite(table, suite)
    params = {**bounds.to_dict(), "max_len": max_len, "vocab_size": vocab.size,
              "vocab_kind": vocab.kind, "label_scale": vocab.label_scale,
              "rows": "given sequences" if encoded is not None else "distinct scaled labels"}
    return _report("tokens", source, params, [table.info()], results, started)


"""Processed datasets from any table (the encoding is data/encoding.py, the writing
data/processed.py).

A YAML :class:`TabularSpec` names a Parquet or CSV file, user-side and item-side categorical
fields, numeric fields to bucketise, a non-negative label and the split, so every model runs
on any long-tailed regression task (e.g. lifetime value)::

    name: ltv
    source: customers.parquet        # relative to the spec file, or a URI (s3a://..., Spark engine)
    label: ltv_90d
    user:
      categorical: [customer_id, country, channel]
      numeric: {age: 10}             # column: number of quantile buckets
    item:
      categorical: [first_category]
    user_key: customer_id            # written as user_id_raw (default: first user field)
    item_key: first_category         # written as item_id_raw (default: first item field)
    timestamp: signup_ts             # optional: numeric seconds or a datetime column
    duration: null                   # optional: a duration in seconds (else NaN)
    oracle: null                     # optional: the label's true conditional median given
                                     # the features (generated data), written to the test
                                     # split as oracle_median
    split: {kind: random, valid_fraction: 0.1, test_fraction: 0.1, seed: 2024}
    # kind: random | chronological (needs timestamp) | column: {kind: column, column: NAME},
    #       the column NAME holds train / valid (or validation, val) / test |
    #       forward: {kind: forward, as_of: 2024-01-08, window_days: 7} trains on the days before
    #       as_of (the last of them valid) and tests on as_of (grmodel/data/windows.py); a row's
    #       day is its partition's (a source directory of date=YYYY-MM-DD/ Parquet folders:
    #       only the window's are read), else its timestamp's UTC day
    # draw (kind random): permutation (default: exact sizes, one array of all rows) | hash
    #       (splits.hash_split: each row by a seeded hash of its index, binomial sizes; what
    #       a Spark build of billions of rows needs)
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from grmodel.config import load_yaml, read_small_text, yaml_problem
from grmodel.data import splits
from grmodel.data.encoding import EncodedField, bucket_field, categorical_field, label_stats
from grmodel.data.io import (
    DataSpecError,
    RawDataError,
    check_unique_names,
    found,
    read_csv,
    sha256_file,
)
from grmodel.data.processed import split_rows_summary, write_processed
from grmodel.data.storage import Location, is_uri, local_path, location
from grmodel.data.windows import (
    PARTITION_KEY,
    check_window,
    day_of,
    epoch_day,
    is_partitioned,
    list_partitions,
    parse_day,
    partition_hash,
    resolve_window,
    rows_by_day,
    window_entry,
)
from grmodel.features import (
    FEW_SPLIT_ROWS,
    LABEL_COLUMN,
    LABEL_MAX,
    LABEL_RULE,
    RAW_PREFIX,
)

log = logging.getLogger(__name__)

DURATION_RULE = "a duration is finite and >= 0 seconds"
RESERVED_COLUMNS = ("label", "duration_s", "timestamp", "user_id_raw", "item_id_raw",
                    "oracle_median", "oracle_mean")


@dataclass
class SideSpec:
    categorical: list[str] = field(default_factory=list)
    numeric: dict[str, int] = field(default_factory=dict)  # column -> quantile buckets

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]


@dataclass
class SplitSpec:
    kind: str = "random"  # random | chronological | column
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 2024
    column: str | None = None  # kind=column: values train / valid (validation, val) / test
    draw: str = "permutation"  # kind=random: permutation | hash (splits.SPLIT_DRAWS)
    as_of: str = ""  # kind=forward: the test day; "" = the newest day of the data
    window_days: int = 0  # kind=forward: the days before as_of learnt from; 0 = every one


@dataclass
class TabularSpec:
    """A generic long-tailed regression dataset (see the module docstring for the YAML)."""

    name: str
    source: str
    label: str
    user: SideSpec
    item: SideSpec
    user_key: str | None = None
    item_key: str | None = None
    timestamp: str | None = None
    duration: str | None = None
    oracle: str | None = None  # generated data: the label's conditional median (the MAE floor)
    split: SplitSpec = field(default_factory=SplitSpec)
    chunk_rows: int = 1_000_000
    base_dir: str = "."  # where a relative ``source`` is resolved (the spec file's folder)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base_dir: str | Path = ".") -> TabularSpec:
        def build(kind: type, values: Any, where: str) -> Any:
            if not isinstance(values, dict):
                raise DataSpecError(f"dataset spec: {where} must be a mapping")
            names = {f.name for f in dataclasses.fields(kind)}
            unknown = sorted(set(values) - names)
            if unknown:
                raise DataSpecError(f"dataset spec: unknown key(s) {unknown} in {where}")
            return values

        top = dict(build(cls, raw, "the top level"))
        for key in ("name", "source", "label", "user", "item"):
            if top.get(key) in (None, "", {}):
                raise DataSpecError(f"dataset spec: {key!r} is required")
        top["user"] = SideSpec(**build(SideSpec, top["user"], "user"))
        top["item"] = SideSpec(**build(SideSpec, top["item"], "item"))
        top["split"] = SplitSpec(**build(SplitSpec, top.get("split") or {}, "split"))
        top.setdefault("base_dir", str(base_dir))
        spec = cls(**top)
        spec.validate()
        return spec

    @classmethod
    def from_yaml(cls, path: str | Path) -> TabularSpec:
        path = Path(path)
        if not path.is_file():
            raise DataSpecError(f"{path}: dataset spec not found")
        try:
            raw = load_yaml(read_small_text(path, "dataset spec"), str(path))
        except UnicodeDecodeError as exc:
            raise DataSpecError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}) (rule: a"
                                " dataset spec is a UTF-8 YAML file)") from None
        except yaml.YAMLError as exc:
            raise DataSpecError(f"{path}: not valid YAML: {yaml_problem(exc)} (rule: a dataset"
                                " spec is a YAML mapping)") from None
        return cls.from_dict(raw or {}, base_dir=path.parent)

    def validate(self) -> None:
        for key in ("name", "source", "label", "user_key", "item_key", "timestamp", "duration",
                    "oracle"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise DataSpecError(f"dataset spec: {key!r} is a {type(value).__name__} (rule:"
                                    f" {key} is a column name or text)")
        for side, spec in (("user", self.user), ("item", self.item)):
            if not isinstance(spec.categorical, list) or not isinstance(spec.numeric, dict) or not all(
                    isinstance(c, str) for c in spec.columns):
                raise DataSpecError(f"dataset spec: {side}: categorical is a list and numeric a"
                                    " mapping of column names (rule: the spec's field lists)")
            if not spec.columns:
                raise DataSpecError(f"dataset spec: {side} needs at least one field")
            for column, buckets in spec.numeric.items():
                if not isinstance(buckets, int) or buckets < 2:
                    raise DataSpecError(
                        f"dataset spec: {side}.numeric.{column}: bucket count must be an"
                        " integer >= 2")
        names = [*self.user.columns, *self.item.columns]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DataSpecError(f"dataset spec: field(s) {repeated} appear more than once")
        clash = sorted(set(names) & set(RESERVED_COLUMNS)) + sorted(
            n for n in names if n.endswith("_mask") or n.startswith(RAW_PREFIX))
        if clash:
            raise DataSpecError(f"dataset spec: field name(s) {clash} are reserved")
        if self.label in names:
            raise DataSpecError(f"dataset spec: the label {self.label!r} is also a feature (rule:"
                                " the label is never a feature: a model would read its target)")
        if self.oracle and self.oracle in (*names, self.label):
            raise DataSpecError(f"dataset spec: oracle column {self.oracle!r} is a feature or the"
                                " label (rule: the oracle is neither)")
        if self.split.kind not in ("random", "chronological", "column", "forward"):
            raise DataSpecError(f"dataset spec: split.kind {self.split.kind!r}: expected random,"
                                " chronological, column or forward")
        if self.split.kind == "forward":
            check_window(self.split.as_of, self.split.window_days, "dataset spec: split")
        elif self.split.as_of or self.split.window_days:
            raise DataSpecError("dataset spec: split.as_of and split.window_days apply to"
                                " split.kind forward only")
        if self.split.draw not in splits.SPLIT_DRAWS:
            raise DataSpecError(f"dataset spec: split.draw {self.split.draw!r}: expected"
                                " permutation or hash")
        if self.split.kind == "chronological" and not self.timestamp:
            raise DataSpecError("dataset spec: split.kind chronological needs 'timestamp'")
        if self.split.kind == "column" and not self.split.column:
            raise DataSpecError("dataset spec: split.kind column needs split.column")
        if self.split.kind not in ("column", "forward"):
            splits.check_fractions(self.split.valid_fraction, self.split.test_fraction)

    @property
    def source_path(self) -> Path | str:
        """The source: a URI as written (``s3a://...``: read by ``--engine spark``), else a
        path resolved against the spec's folder."""
        return self.source if is_uri(self.source) else Path(self.base_dir) / self.source


def build_tabular(spec: str | Path | TabularSpec, out_dir: str | Path) -> dict[str, Any]:
    """Ingest the table a spec names into the processed-dataset contract; return the
    manifest."""
    if not isinstance(spec, TabularSpec):
        spec = TabularSpec.from_yaml(spec)
    path = local_path(spec.source_path)
    frame, partitions = _read_table(path, spec)
    n = len(frame)

    label = frame[spec.label].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(label) | (label < 0) | (label > LABEL_MAX)
    if bad.any():
        raise RawDataError(f"{path}: column {spec.label!r} has {int(bad.sum())} missing,"
                           f" negative, infinite or too large values (rule: {LABEL_RULE})")
    timestamp = (_seconds(frame[spec.timestamp], path, spec.timestamp) if spec.timestamp
                 else np.full(n, np.nan))
    duration = np.full(n, np.nan)
    if spec.duration:
        duration = frame[spec.duration].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(duration) | (duration < 0)
        if bad.any():
            raise RawDataError(f"{path}: column {spec.duration!r} has {int(bad.sum())} missing,"
                               f" negative or infinite values (rule: {DURATION_RULE})")
    oracle = None
    if spec.oracle:
        oracle = frame[spec.oracle].to_numpy(dtype=np.float64)
        if (~np.isfinite(oracle) | (oracle < 0)).any():
            raise RawDataError(f"{path}: column {spec.oracle!r} has missing, negative or infinite"
                               " values (rule: the oracle median is non-negative and finite)")

    window = None
    if spec.split.kind == "forward":
        days = row_days(frame, timestamp, path)
        present = np.unique(days[np.isfinite(days)])
        window = resolve_window(spec.split.as_of, spec.split.window_days,
                                [day_of(d) for d in present])
        codes = window.codes(days)
    elif spec.split.kind == "column":
        codes = _codes_from_column(frame[spec.split.column], path, spec.split.column)
    elif spec.split.kind == "chronological":
        codes = splits.chronological_split(timestamp, spec.split.valid_fraction,
                                           spec.split.test_fraction)
    elif spec.split.draw == "hash":
        codes = splits.hash_split(np.arange(n), spec.split.valid_fraction,
                                  spec.split.test_fraction, spec.split.seed)
    else:
        codes = splits.random_split(n, spec.split.valid_fraction, spec.split.test_fraction,
                                    spec.split.seed)
    train = codes == splits.TRAIN
    if not train.any():
        raise RawDataError(f"{path}: the split leaves no training rows (rule: train non-empty)")

    fields: list[EncodedField] = []
    for side, side_spec in (("user", spec.user), ("item", spec.item)):
        for column in side_spec.categorical:
            fields.append(categorical_field(column, side, frame[column].to_numpy(), train))
        for column, buckets in side_spec.numeric.items():
            values = frame[column].to_numpy(dtype=np.float64)
            fields.append(bucket_field(column, side, values, train, buckets))

    user_raw = frame[spec.user_key or spec.user.columns[0]].to_numpy()
    item_raw = frame[spec.item_key or spec.item.columns[0]].to_numpy()

    def columns(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {LABEL_COLUMN: label[rows], "duration_s": duration[rows],
                "timestamp": timestamp[rows], "user_id_raw": user_raw[rows],
                "item_id_raw": item_raw[rows]}

    ordered_by = timestamp if spec.split.kind == "chronological" else None
    split_rows = splits.rows_by_split(codes, ordered_by)
    warnings = plausibility_warnings(path, label[train], split_rows)
    dropped = dropped_warning(path, int((codes == splits.DROPPED).sum()), n, spec.split.kind)
    if dropped:
        warnings.append(dropped)
    manifest = {
        "dataset": spec.name,
        "source": {"path": str(path), "rows": n,
                   "sha256": sha256_file(path) if path.is_file() else None,
                   **({"partitions": partitions} if partitions else {})},
        "options": dataclasses.asdict(spec),
        "label": {"mode": spec.label, "unit": "label", "column": LABEL_COLUMN,
                  "source_column": spec.label, "train_stats": label_stats(label[train])},
        "duration_available": spec.duration is not None,
        "splits": _split_summary(split_rows, codes, spec.split.kind),
        "oracle": ({"present": True, "source": f"column {spec.oracle!r}", "unit": "label",
                    "columns": ["oracle_median"]} if oracle is not None else
                   {"present": False, "reason": "the spec names no oracle column"}),
        "warnings": warnings,
        **({"window": window_entry(window, rows_by_day(days, codes))} if window else {}),
    }

    def oracle_columns(rows: np.ndarray) -> dict[str, np.ndarray]:
        assert oracle is not None
        return {"oracle_median": oracle[rows]}

    result = write_processed(out_dir, fields, columns, split_rows, manifest,
                             oracle_columns if oracle is not None else None,
                             chunk_rows=spec.chunk_rows)
    log.info("built %s: %s", out_dir, {k: len(v) for k, v in split_rows.items()})
    return result


def plausibility_warnings(path: Path, train_label: np.ndarray,
                          split_rows: dict[str, np.ndarray]) -> list[str]:
    """What builds but is likely a mistake, logged and returned for the manifest: a split of
    fewer than FEW_SPLIT_ROWS rows (its metrics are noise), a constant training label."""
    warnings = [f"{path}: the {name} split has {len(rows)} rows (rule: at least"
                f" {FEW_SPLIT_ROWS:,} rows per split)"
                for name, rows in split_rows.items() if len(rows) < FEW_SPLIT_ROWS]
    if len(train_label) and train_label.min() == train_label.max():
        warnings.append(f"{path}: the training label is constant ({train_label[0]:g}) (rule: a"
                        " label that varies; a model of it collapses to that constant)")
    for warning in warnings:
        log.warning("%s", warning)
    return warnings



def dropped_warning(path: Path | str, dropped: int, rows: int, kind: str) -> str | None:
    """The warning (logged, and for the manifest) of rows a split could not place, or None."""
    if not dropped:
        return None
    why = {"chronological": "no timestamp",
           "forward": "no day in the window (before its first day, after as_of, or none)"
           }.get(kind, "no split")
    warning = (f"{path}: {dropped:,} of {rows:,} rows have {why} and are in no split (rule: a row"
               " is dropped only with its count in the output and the manifest)")
    log.warning("%s", warning)
    return warning


def _split_summary(split_rows: dict[str, np.ndarray], codes: np.ndarray, kind: str
                   ) -> dict[str, Any]:
    return {"kind": kind, "rows": split_rows_summary(split_rows),
            "dropped_rows": int((codes == splits.DROPPED).sum())}


def _read_table(path: Path, spec: TabularSpec) -> tuple[pd.DataFrame, dict[str, str]]:
    """The spec's columns from a Parquet or CSV file, or a directory of Parquet files (with
    the partition columns of its ``key=value`` folders, as text); and, for a directory, the
    content hash of each partition read. Clear errors for missing columns."""
    wanted = [*spec.user.columns, *spec.item.columns, spec.label]
    wanted += [c for c in (spec.user_key, spec.item_key, spec.timestamp, spec.duration,
                           spec.oracle, spec.split.column) if c]
    wanted = list(dict.fromkeys(wanted))
    numeric = [*spec.user.numeric, *spec.item.numeric, spec.label,
               *([c for c in (spec.duration, spec.oracle) if c])]
    partitions: dict[str, str] = {}
    if path.is_dir():
        frame, partitions = _read_directory(path, spec, wanted)
    elif not path.is_file():
        raise RawDataError(f"{path}: file not found (rule: the spec's source exists)")
    elif path.suffix == ".parquet":
        frame = _read_parquet(path, wanted)
    elif path.suffix == ".csv":
        kinds = {c: ("float" if c in numeric else "str") for c in wanted}
        if spec.timestamp:
            kinds[spec.timestamp] = "auto"
        frame = read_csv(path, kinds, null_strings=True).to_pandas()
    else:
        raise DataSpecError(f"{path}: source must be a .parquet or .csv file (or a directory of"
                            " Parquet files)")
    for column in numeric:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise RawDataError(f"{path}: column {column!r} has type {frame[column].dtype}"
                               " (rule: numeric)")
    return frame, partitions


def _read_parquet(path: Path, wanted: list[str], constants: dict[str, str] | None = None
                  ) -> pd.DataFrame:
    constants = constants or {}
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as exc:
        raise RawDataError(f"{path}: not a readable Parquet file: {exc}"
                           " (rule: a well-formed Parquet file)") from None
    check_unique_names(path, names, wanted)
    missing = [c for c in wanted if c not in names and c not in constants]
    if missing:
        raise RawDataError(f"{path}: missing column(s) {missing} (rule: the spec's columns;"
                           f" {found(names, wanted)})")
    frame = pq.read_table(path, columns=[c for c in wanted if c in names]).to_pandas()
    for name, value in constants.items():
        if name in wanted:
            frame[name] = value
    if frame.empty:
        raise RawDataError(f"{path}: no data rows (rule: a non-empty table)")
    return frame[wanted]


def _read_directory(path: Path, spec: TabularSpec, wanted: list[str]
                    ) -> tuple[pd.DataFrame, dict[str, str]]:
    """The Parquet files under ``path`` (:func:`source_files`), each with its partition
    columns, and each partition's content hash."""
    root = location(str(path))
    files, hashes = source_files(root, spec)
    want = list(dict.fromkeys([*wanted, PARTITION_KEY])) if spec.split.kind == "forward" else wanted
    frames = []
    for file in files:
        constants = dict(part.split("=", 1) for part in file.relative_parts(root) if "=" in part)
        frames.append(_read_parquet(Path(file.path), [c for c in want if c in constants
                                                      or c in wanted], constants))
    return pd.concat(frames, ignore_index=True), hashes


def source_files(root: Location, spec: TabularSpec) -> tuple[list[Location], dict[str, str]]:
    """The Parquet files of a source directory in path order (what both engines read, in
    that order), and the content hash of each partition folder among them. A forward split
    over ``date=`` partitions keeps only its window's."""
    files = root.files(".parquet")
    if not files:
        raise RawDataError(f"{root}: no .parquet files (rule: a partitioned Parquet directory"
                           " holds Parquet files)")
    if spec.split.kind == "forward" and is_partitioned(root):
        days = {day: p.name for day, p in list_partitions(root).items()}
        window = resolve_window(spec.split.as_of, spec.split.window_days, list(days))
        keep = {days[d] for d in window.dates() if d in days}
        files = [f for f in files if f.relative_parts(root)[:1] and f.relative_parts(root)[0] in keep]
    folders = sorted({"/".join(f.relative_parts(root)) for f in files if f.relative_parts(root)})
    hashes = {name: partition_hash(root.child(name))["sha256"] for name in folders}
    return files, hashes


def row_days(frame: pd.DataFrame, timestamp: np.ndarray, path: Path) -> np.ndarray:
    """Each row's day (days since 1970-01-01) for a forward split: its ``date=`` partition's,
    else its timestamp's UTC day (NaN without one)."""
    if PARTITION_KEY in frame:
        names, index = np.unique(frame[PARTITION_KEY].astype(str).to_numpy(), return_inverse=True)
        days = [epoch_day(parse_day(n, f"{path} partition {PARTITION_KEY}")) for n in names]
        return np.asarray(days, dtype=np.float64)[index]
    if np.isnan(timestamp).all():
        raise DataSpecError(f"{path}: split.kind forward needs day partitions ({PARTITION_KEY}="
                            "YYYY-MM-DD folders) or a 'timestamp' column")
    return np.floor(timestamp / 86_400.0)


def _seconds(column: pd.Series, path: Path, name: str) -> np.ndarray:
    """A timestamp column as float seconds since the epoch (NaN where missing)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        seconds = column.astype("datetime64[ns]").astype(np.int64) / 1e9
        return np.where(column.isna(), np.nan, seconds)
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64)
    raise RawDataError(f"{path}: column {name!r} has type {column.dtype} (rule: timestamp is"
                       " numeric seconds or a datetime)")


def _codes_from_column(column: pd.Series, path: Path, name: str) -> np.ndarray:
    values = column.astype("string").str.strip().str.lower()
    codes = np.full(len(values), splits.DROPPED, dtype=np.int8)
    names = {**{split: split for split in splits.SPLIT_CODES}, **splits.SPLIT_ALIASES}
    for value, split in names.items():
        codes[(values == value).fillna(False).to_numpy()] = splits.SPLIT_CODES[split]
    bad = codes == splits.DROPPED
    if bad.any():
        example = column[bad].iloc[0]
        raise RawDataError(f"{path}: column {name!r} has {int(bad.sum())} values such as"
                           f" {example!r} (rule: one of train, valid, test; validation and val"
                           " mean valid)")
    return codes

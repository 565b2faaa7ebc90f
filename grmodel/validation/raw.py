"""The raw KuaiRec suites (the interaction matrices, item_categories.csv, user_features.csv)
and ``validate_raw_kuairec``, which reads the files and runs them.

Dates are checked against the run's window when the caller gives one (``RawBounds.first_day``
and ``last_day``), else against the days the data itself holds, whose consecutive days may not
be more than ``max_gap_days`` apart (a row dated far from the rest). Logs by day (``date=``
partitions, schema.py) are read as one table, each row checked to fall on its partition's day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from grmodel.data.kuairec.ingest import local_days
from grmodel.data.kuairec.schema import (
    BIG,
    DAY_FILE,
    INTERACTION_COLUMNS,
    INTERACTION_FILES,
    ITEM_FILE,
    MAX_PLAY_DURATION_MS,
    MAX_TAGS,
    MAX_VIDEO_DURATION_MS,
    MAX_WATCH_RATIO,
    N_TAGS,
    ONEHOT_LEVELS,
    RAW_FILES,
    TAG_LIST,
    USER_ACTIVE_DEGREES,
    USER_FILE,
    USER_FLAGS,
    UTC_PLUS_8_MS,
    ColumnKind,
)
from grmodel.data.storage import location
from grmodel.data.windows import day_of, epoch_day, list_partitions
from grmodel.validation.checks import (
    Check,
    DerivedColumn,
    TableSuite,
    between,
    column_checks,
    columns_present,
    first_offending_field,
    float_column,
    in_set,
    no_offending_field,
    row_count,
    unique,
)
from grmodel.validation.gx import make_report, run_suite
from grmodel.validation.report import ValidationReport
from grmodel.validation.tables import LoadedTable, read_csv_table

UTC_PLUS_8 = dt.timezone(dt.timedelta(milliseconds=UTC_PLUS_8_MS))

WATCH_RATIO_SAMPLES = ("play_duration", "video_duration", "watch_ratio")
# Derived columns of the date checks, and the column naming a row's partition (day layout).
DAY_GAP, OFF_PARTITION = "days_since_previous_day", "days_off_partition"
PARTITION_DAY = "partition_day"


@dataclass(frozen=True)
class RawBounds:
    """Bounds of the raw KuaiRec suites; the defaults accept the real files and the generated
    ones (every preset of ``grmodel.data.kuairec.synth``)."""

    big_rows: tuple[int, int] = (1_000, 20_000_000)
    small_rows: tuple[int, int] = (1_000, 10_000_000)
    user_rows: tuple[int, int] = (10, 100_000)
    item_rows: tuple[int, int] = (10, 1_000_000)
    # Local (UTC+8) days the rows must fall in, inclusive: a run's window (its first day ..
    # its as_of day). None: the days of the data's own timestamps (reported as used).
    first_day: str | None = None
    last_day: str | None = None
    # The days the data holds may be at most this many days apart (a stray date, e.g. a row
    # from another year, leaves a gap).
    max_gap_days: int = 7
    # watch_ratio must equal play_duration / video_duration within this relative tolerance.
    watch_ratio_rtol: float = 1e-3
    # Plausibility caps (their sources: grmodel/data/kuairec/schema.py).
    max_play_duration_ms: int = MAX_PLAY_DURATION_MS
    max_video_duration_ms: int = MAX_VIDEO_DURATION_MS
    max_watch_ratio: float = MAX_WATCH_RATIO
    # Distribution bounds: real KuaiRec's median is 0.72 (big) / 0.77 (small) and 0.92% / 0.49%
    # of rows lie above 5; a spike of re-watches or a unit error moves them out.
    watch_ratio_median: tuple[float, float] = (0.4, 1.2)
    spike_threshold: float = 5.0
    max_share_above_spike: float = 0.03
    # The small matrix lacks about 4% of its dates/timestamps: warn beyond 10%.
    min_time_present: float = 0.9
    n_tags: int = N_TAGS
    max_tags_per_video: int = MAX_TAGS
    user_active_degrees: tuple[str, ...] = USER_ACTIVE_DEGREES
    onehot_levels: tuple[int, ...] = ONEHOT_LEVELS
    # onehot_feat4 lacks about 3% of users, 12-17 about 1% each (docs/kuairec.md): warn beyond
    # 10%.
    min_onehot_present: float = 0.9

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _day_start(day: str) -> float:
    """Unix seconds at local (UTC+8) midnight of an ISO day."""
    return dt.datetime.fromisoformat(day).replace(tzinfo=UTC_PLUS_8).timestamp()


def watch_ratio_deviation(frame: pd.DataFrame) -> np.ndarray:
    """|watch_ratio - play/video| relative to play/video; NaN where video_duration <= 0."""
    play, video = float_column(frame, "play_duration"), float_column(frame, "video_duration")
    ratio = float_column(frame, "watch_ratio")
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = play / video
        deviation = np.abs(ratio - expected) / np.maximum(expected, 1e-9)
    deviation[~(video > 0)] = np.nan  # the duration checks report those rows
    return deviation


def day_gaps(frame: pd.DataFrame) -> np.ndarray:
    """Per row: how many days after the previous day the data holds its timestamp's day
    falls (0 on the first day; NaN without a timestamp)."""
    days = local_days(float_column(frame, "timestamp"))
    present = np.unique(days[np.isfinite(days)])
    gaps = np.diff(present, prepend=present[:1])
    out = np.full(len(days), np.nan)
    timed = np.isfinite(days)
    out[timed] = gaps[np.searchsorted(present, days[timed])]
    return out


def days_off_partition(frame: pd.DataFrame) -> np.ndarray:
    """Per row: its timestamp's day minus its partition's day (0 where they agree)."""
    return local_days(float_column(frame, "timestamp")) - float_column(frame, PARTITION_DAY)


def resolved_bounds(bounds: RawBounds, tables: Sequence[LoadedTable]) -> RawBounds:
    """``bounds`` with the days taken from the data (the first and last UTC+8 day of the
    timestamps the tables hold) where the caller gave none."""
    if bounds.first_day is not None and bounds.last_day is not None:
        return bounds
    days = [local_days(float_column(t.frame, "timestamp")) for t in tables
            if not t.why_unusable("timestamp")]
    found = np.concatenate(days) if days else np.empty(0)
    found = found[np.isfinite(found)]
    if not len(found):  # nothing to take them from: the type checks report why
        first = last = dt.date.today().isoformat()
    else:
        first, last = (day_of(int(d)).isoformat() for d in (found.min(), found.max()))
    return dataclasses.replace(bounds, first_day=bounds.first_day or first,
                               last_day=bounds.last_day or last)


def unlisted_ids(frame: pd.DataFrame, column: str, known: np.ndarray) -> pd.Series:
    """The ids of ``column`` that are not in ``known`` (missing where they are)."""
    ids = frame[column]
    listed = ids.isin(known) | ids.isna()  # a missing id is the not-null check's business
    return ids.where(~listed).astype("Int64")


def interaction_suite(
    file_name: str,
    bounds: RawBounds,
    rows: tuple[int, int],
    known_users: np.ndarray | None = None,
    known_items: np.ndarray | None = None,
    partitioned: bool = False,
) -> TableSuite:
    """big_matrix.csv / small_matrix.csv, or a day layout's interactions (``partitioned``: a
    ``PARTITION_DAY`` column names each row's partition): one row per (user, video) play.
    The date and timestamp range checks need ``bounds.first_day`` / ``last_day``
    (``resolved_bounds`` fills them from the data)."""
    spike_quantile = round(1 - bounds.max_share_above_spike, 6)
    deviation = "watch_ratio_deviation"
    checks = [row_count(rows), columns_present(list(INTERACTION_COLUMNS))]
    for name, kind in INTERACTION_COLUMNS.items():
        nullable = bounds.min_time_present if name in ("date", "timestamp") else 1.0
        checks += column_checks(name, kind, nullable)
    checks += [
        between("user_id", 0, None),
        between("video_id", 0, None),
        between("play_duration", 0, bounds.max_play_duration_ms,
                f"0 <= play_duration <= {bounds.max_play_duration_ms:,} ms (one day; real"
                " KuaiRec max 999,639 ms)", WATCH_RATIO_SAMPLES),
        between("video_duration", 1, bounds.max_video_duration_ms,
                f"0 < video_duration <= {bounds.max_video_duration_ms:,} ms (real KuaiRec max"
                " 315,072 ms)", WATCH_RATIO_SAMPLES),
        between("watch_ratio", 0, bounds.max_watch_ratio,
                f"0 <= watch_ratio <= {bounds.max_watch_ratio:g} (real KuaiRec max 573.5)",
                WATCH_RATIO_SAMPLES),
        between(DAY_GAP, 0, bounds.max_gap_days,
                f"the days of the data are at most {bounds.max_gap_days} days apart (a stray"
                " date leaves a gap)", ("date", "timestamp")),
        between(
            deviation, 0, bounds.watch_ratio_rtol,
            f"watch_ratio = play_duration / video_duration within {bounds.watch_ratio_rtol:.2%}",
            WATCH_RATIO_SAMPLES,
        ),
        Check(
            "expect_column_median_to_be_between",
            {"column": "watch_ratio", "min_value": bounds.watch_ratio_median[0],
             "max_value": bounds.watch_ratio_median[1]},
            f"median watch_ratio within {bounds.watch_ratio_median}",
        ),
        # A quantile, not the mean of an indicator column: GX's pandas mean scans values one
        # by one in Python (a decimal check), seconds per million rows.
        Check(
            "expect_column_quantile_values_to_be_between",
            {"column": "watch_ratio",
             "quantile_ranges": {"quantiles": [spike_quantile],
                                 "value_ranges": [[None, bounds.spike_threshold]]}},
            f"at most {bounds.max_share_above_spike:.1%} of rows have watch_ratio >"
            f" {bounds.spike_threshold:g} (its {spike_quantile:.3g} quantile <="
            f" {bounds.spike_threshold:g})",
        ),
    ]
    if bounds.first_day is not None and bounds.last_day is not None:
        days = f"{bounds.first_day} .. {bounds.last_day}"
        checks += [
            between("date", int(bounds.first_day.replace("-", "")),
                    int(bounds.last_day.replace("-", "")), f"date within {days}"),
            between("timestamp", _day_start(bounds.first_day),
                    _day_start(bounds.last_day) + 86_400, f"timestamp within {days} (UTC+8)"),
        ]
    derived = [
        DerivedColumn(deviation, ("play_duration", "video_duration", "watch_ratio"),
                      watch_ratio_deviation),
        DerivedColumn(DAY_GAP, ("timestamp",), day_gaps),
    ]
    if partitioned:
        checks.append(between(OFF_PARTITION, 0, 0, "every row's timestamp falls on its"
                              " partition's day (UTC+8)", ("date", "timestamp")))
        derived.append(DerivedColumn(OFF_PARTITION, ("timestamp", PARTITION_DAY),
                                     days_off_partition))
    # Referential checks: a derived column of the unlisted ids (missing where listed), not
    # expect_column_values_to_be_in_set with thousands of ids, which GX re-serialises for
    # every metric it plans (about 15 s per matrix).
    for column, known, source in (("user_id", known_users, USER_FILE),
                                  ("video_id", known_items, ITEM_FILE)):
        if known is not None:
            name = f"unlisted_{column}"
            checks.append(Check("expect_column_values_to_be_null", {"column": name},
                                f"every {column} is listed in {source}"))
            derived.append(DerivedColumn(name, (column,), functools.partial(
                unlisted_ids, column=column, known=known)))
    return TableSuite(file_name, dict(INTERACTION_COLUMNS), tuple(checks), tuple(derived))


def _tag_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Number of tags and the largest tag id of each ``feat`` list literal (NaN if malformed)."""
    feat = frame["feat"].astype("str")
    well_formed = feat.str.fullmatch(TAG_LIST).fillna(False).astype(bool)
    tags = feat.str.findall(r"\d+").where(well_formed)
    return pd.DataFrame({
        "n": tags.map(lambda t: len(t) if isinstance(t, list) else np.nan),
        "max": tags.map(lambda t: max(map(int, t)) if isinstance(t, list) and t else np.nan),
    }).astype("Int64")


def item_categories_suite(bounds: RawBounds) -> TableSuite:
    """item_categories.csv: one row per video, ``feat`` a list literal of 1-4 tag ids."""
    checks = [
        row_count(bounds.item_rows),
        columns_present(["video_id", "feat"]),
        *column_checks("video_id", "int"),
        between("video_id", 0, None),
        unique("video_id"),
        *column_checks("feat", "str"),
        Check(
            "expect_column_values_to_match_regex",
            {"column": "feat", "regex": TAG_LIST},
            "feat is a list literal of integer tag ids, e.g. [27, 9]",
        ),
        between("feat_n_tags", 1, bounds.max_tags_per_video,
                f"1 to {bounds.max_tags_per_video} tags per video", ("feat",)),
        between("feat_max_tag", 0, bounds.n_tags - 1,
                f"tag ids within 0 .. {bounds.n_tags - 1}", ("feat",)),
    ]
    derived = (
        DerivedColumn("feat_n_tags", ("feat",), lambda f: _tag_stats(f)["n"]),
        DerivedColumn("feat_max_tag", ("feat",), lambda f: _tag_stats(f)["max"]),
    )
    return TableSuite(ITEM_FILE, {"video_id": "int", "feat": "str"}, tuple(checks), derived)


def user_features_suite(bounds: RawBounds) -> TableSuite:
    """user_features.csv: one row per user; the profile fields the ingest turns into ids."""
    onehot = [f"onehot_feat{k}" for k in range(len(bounds.onehot_levels))]
    columns: dict[str, ColumnKind] = {"user_id": "int", "user_active_degree": "str"}
    columns.update({flag: "int" for flag in USER_FLAGS})
    columns.update({name: "int" for name in onehot})
    checks = [
        row_count(bounds.user_rows),
        columns_present(list(columns)),
        *column_checks("user_id", "int"),
        between("user_id", 0, None),
        unique("user_id"),
        *column_checks("user_active_degree", "str"),
        in_set("user_active_degree", bounds.user_active_degrees,
               f"user_active_degree is one of {list(bounds.user_active_degrees)}"),
    ]
    for flag in USER_FLAGS:
        checks += [*column_checks(flag, "int"), in_set(flag, (0, 1), f"{flag} is 0 or 1")]
    for name in onehot:
        checks += column_checks(name, "int", nullable=0)
    checks += [
        no_offending_field("onehot_out_of_range",
                           "every onehot_feat<k> is a category index in 0 .. levels[k] - 1"),
        no_offending_field("onehot_missing", "every onehot_feat<k> is present",
                           mostly=bounds.min_onehot_present),
    ]
    levels = np.asarray(bounds.onehot_levels)
    derived = (
        DerivedColumn("onehot_out_of_range", tuple(onehot), lambda f: first_offending_field(
            f, onehot, lambda col, k: ((col < 0) | (col >= levels[k])).fillna(False))),
        DerivedColumn("onehot_missing", tuple(onehot), lambda f: first_offending_field(
            f, onehot, lambda col, k: col.isna())),
    )
    return TableSuite(USER_FILE, columns, tuple(checks), derived)




def _known_ids(table: LoadedTable, column: str) -> np.ndarray | None:
    """Distinct ids of a side file, for referential checks (None if they are unusable)."""
    if table.why_unusable(column):
        return None
    return np.unique(table.frame[column].dropna().to_numpy(dtype=np.int64))


def validate_raw_kuairec(
    raw_dir: str | Path, bounds: RawBounds | None = None, files: Sequence[str] = RAW_FILES
) -> ValidationReport:
    """Validate the raw KuaiRec ``files`` in ``raw_dir`` (default: all four). The side files
    go first, so that the interaction files are checked against their ids. In the day layout
    the side files are the newest day's (else the root's) and the interactions of every day
    are one table (``files`` names them by the big matrix)."""
    started = time.perf_counter()
    raw_dir, bounds = Path(raw_dir), bounds or RawBounds()
    unknown = sorted(set(files) - set(RAW_FILES))
    if unknown:
        raise ValueError(f"validate_raw_kuairec: unknown files {unknown}; expected {RAW_FILES}")
    partitions = ({} if (raw_dir / BIG).is_file() or not raw_dir.is_dir()
                  else list_partitions(location(str(raw_dir))))
    side_dir = raw_dir
    if partitions:
        newest = raw_dir / list(partitions.values())[-1].name
        side_dir = newest if (newest / USER_FILE).is_file() else raw_dir
    tables, results = [], []

    def check(table: LoadedTable, suite: TableSuite) -> LoadedTable:
        results.extend(run_suite(table, suite))
        tables.append(table.info())
        return table

    known_users = known_items = None
    if USER_FILE in files:
        suite = user_features_suite(bounds)
        known_users = _known_ids(check(read_csv_table(side_dir / USER_FILE, suite.columns), suite),
                                 "user_id")
    if ITEM_FILE in files:
        suite = item_categories_suite(bounds)
        known_items = _known_ids(check(read_csv_table(side_dir / ITEM_FILE, suite.columns),
                                       suite), "video_id")
    columns = dict(INTERACTION_COLUMNS)
    if partitions:
        matrices = [(DAY_FILE, bounds.big_rows, _read_days(raw_dir, partitions, columns))
                    ] if BIG in files else []
    else:
        matrices = [(name, rows, read_csv_table(raw_dir / name, columns))
                    for name, rows in zip(INTERACTION_FILES, (bounds.big_rows, bounds.small_rows))
                    if name in files]
    bounds = resolved_bounds(bounds, [table for _, _, table in matrices if table.frame is not None])
    for name, rows, table in matrices:
        check(table, interaction_suite(name, bounds, rows, known_users, known_items,
                                       partitioned=bool(partitions)))
    return make_report("raw_kuairec", str(raw_dir), bounds.to_dict(), tables, results, started)


def _read_days(raw_dir: Path, partitions: dict[dt.date, Any],
               columns: dict[str, ColumnKind]) -> LoadedTable:
    """Every day's interactions as one table with a ``PARTITION_DAY`` column (days since
    1970-01-01); what reading each file found, each naming its partition."""
    frames, findings, unparsed = [], [], set()
    for day, partition in partitions.items():
        table = read_csv_table(raw_dir / partition.name / DAY_FILE, columns)
        findings += [dataclasses.replace(f, note=f"{partition.name}: {f.note}".rstrip(": "))
                     for f in table.findings]
        unparsed |= table.unparsed
        if table.frame is not None:
            frames.append(table.frame.assign(**{PARTITION_DAY: float(epoch_day(day))}))
    frame = pd.concat(frames, ignore_index=True) if frames else None
    if frame is not None:
        unparsed |= {c for c in frame.columns if frame[c].dtype == object and c in columns
                     and columns[c] != "str"}
    return LoadedTable(DAY_FILE, raw_dir, frame, findings, unparsed)

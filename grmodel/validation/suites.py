"""Expectation suites as code: what raw KuaiRec files, processed splits and tokenised labels
must satisfy.

A :class:`TableSuite` describes one table: the columns to read (with their declared types),
derived columns computed before validation (cross-column rules become one vectorised column,
e.g. the watch ratio's deviation from play/video duration), and the :class:`Check` list. A check
is one great_expectations expectation (by its snake_case name) plus the rule in words and a
severity. Checks with ``mostly < 1`` or ``severity="warning"`` are warnings: reported, never a
failed gate. Every bound is a field of a ``*Bounds`` dataclass so callers can change it and the
report records the values used.

This module builds plain descriptions only; ``grmodel.validation.runner`` reads the data and
runs them with great_expectations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from grmodel.data.kuairec.schema import (
    INTERACTION_COLUMNS,
    ITEM_FILE,
    MAX_PLAY_DURATION_MS,
    MAX_TAGS,
    MAX_VIDEO_DURATION_MS,
    MAX_WATCH_RATIO,
    N_TAGS,
    ONEHOT_LEVELS,
    TAG_LIST,
    USER_ACTIVE_DEGREES,
    USER_FILE,
    USER_FLAGS,
    ColumnKind,
)
from grmodel.features import FEW_SPLIT_ROWS, FeatureSchema
from grmodel.vocab import SOS

Severity = Literal["error", "warning"]

# dtype names accepted per declared kind: numpy names for plain columns, "Int64Dtype" for an
# integer column with missing values, and the Python type for values of a column that only
# partly parsed (object dtype, checked value by value).
TYPE_LISTS: dict[str, list[str]] = {
    "int": ["int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "Int64Dtype", "int"],
    "float": ["float64", "float32", "float"],
}
FLOAT_MAX = float(np.finfo(np.float64).max)  # "finite" as an upper bound (inf fails it)
UTC_PLUS_8 = dt.timezone(dt.timedelta(hours=8))


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


def _float(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)


# ------------------------------------------------------------------------------ raw KuaiRec

WATCH_RATIO_SAMPLES = ("play_duration", "video_duration", "watch_ratio")


@dataclass(frozen=True)
class RawBounds:
    """Bounds of the raw KuaiRec suites; the defaults accept the real files and the generated
    ones (every preset of ``grmodel.data.kuairec.synth``)."""

    big_rows: tuple[int, int] = (1_000, 20_000_000)
    small_rows: tuple[int, int] = (1_000, 10_000_000)
    user_rows: tuple[int, int] = (10, 100_000)
    item_rows: tuple[int, int] = (10, 1_000_000)
    first_day: str = "2020-07-05"  # local (UTC+8) days, inclusive
    last_day: str = "2020-09-05"
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
    # onehot_feat4 and 12-17 lack about 4% of users (kuairec.md): warn beyond 10%.
    min_onehot_present: float = 0.9

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _day_start(day: str) -> float:
    """Unix seconds at local (UTC+8) midnight of an ISO day."""
    return dt.datetime.fromisoformat(day).replace(tzinfo=UTC_PLUS_8).timestamp()


def watch_ratio_deviation(frame: pd.DataFrame) -> np.ndarray:
    """|watch_ratio - play/video| relative to play/video; NaN where video_duration <= 0."""
    play, video = _float(frame, "play_duration"), _float(frame, "video_duration")
    ratio = _float(frame, "watch_ratio")
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = play / video
        deviation = np.abs(ratio - expected) / np.maximum(expected, 1e-9)
    deviation[~(video > 0)] = np.nan  # the duration checks report those rows
    return deviation


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
) -> TableSuite:
    """big_matrix.csv / small_matrix.csv: one row per (user, video) play."""
    spike_quantile = round(1 - bounds.max_share_above_spike, 6)
    deviation = "watch_ratio_deviation"
    day_min = int(bounds.first_day.replace("-", ""))
    day_max = int(bounds.last_day.replace("-", ""))
    t_min = _day_start(bounds.first_day)
    t_max = _day_start(bounds.last_day) + 86_400
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
        between("date", day_min, day_max, f"date within {bounds.first_day} .. {bounds.last_day}"),
        between(
            "timestamp", t_min, t_max,
            f"timestamp within {bounds.first_day} .. {bounds.last_day} (UTC+8)",
        ),
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
    derived = [
        DerivedColumn(deviation, ("play_duration", "video_duration", "watch_ratio"),
                      watch_ratio_deviation),
    ]
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


# ------------------------------------------------------------------------ processed dataset

OverlapRule = Literal["auto", "none", "pairs", "time"]
RAW_ID_COLUMNS = ("user_id_raw", "item_id_raw")


@dataclass(frozen=True)
class ProcessedBounds:
    """Bounds of the processed-dataset suites."""

    min_train_rows: int = 100
    min_eval_rows: int = 1  # valid and test
    # Warnings, not failures: a split with fewer rows gives noisy metrics; a constant label
    # teaches nothing (a model of it collapses to that constant).
    few_rows: int = FEW_SPLIT_ROWS
    # Label tail: no label above label_tail_factor x its label_tail_quantile quantile in its
    # split. Real KuaiRec (kuairec.md): max watch_ratio 573.5 = 120 x its p99 4.79; the
    # generator's full preset: max watch time 16,823 s = 67 x its 0.999 quantile 249 s. A
    # thousandfold outlier is a unit error or a corrupt row (1e12 ms plays put the train label
    # mean at 416,678 s). Not applied where the quantile is 0.
    label_tail_quantile: float = 0.999
    label_tail_factor: float = 1_000.0
    # What train and test may not share: "pairs" (no (user, item) pair in both), "time" (test
    # starts after train ends), "none", or "auto" (from the manifest's split description).
    forbid_overlap: OverlapRule = "auto"

    def __post_init__(self) -> None:
        allowed = ("auto", "none", "pairs", "time")
        if self.forbid_overlap not in allowed:
            raise ValueError(f"forbid_overlap={self.forbid_overlap!r}: expected one of {allowed}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def label_tail_ratio(frame: pd.DataFrame, quantile: float) -> np.ndarray:
    """Each label over its split's ``quantile`` quantile; NaN where the label is negative or
    not finite (the label checks report those) or the quantile is 0."""
    label = _float(frame, "label")
    finite = np.isfinite(label) & (label >= 0)
    level = float(np.quantile(label[finite], quantile)) if finite.any() else 0.0
    if level <= 0:
        return np.full(len(label), np.nan)
    return np.where(finite, label / level, np.nan)


def pair_keys(frame: pd.DataFrame) -> np.ndarray:
    """One int64 key per (user_id_raw, item_id_raw) pair."""
    user = frame["user_id_raw"].to_numpy(dtype=np.int64)
    item = frame["item_id_raw"].to_numpy(dtype=np.int64)
    return (user << 32) ^ (item & 0xFFFFFFFF)


def processed_split_suite(
    split: str,
    schema: FeatureSchema,
    expected_rows: int | None,
    bounds: ProcessedBounds,
    overlap: Literal["none", "pairs", "time"] = "none",
    train_pairs: np.ndarray | None = None,
    train_max_timestamp: float | None = None,
) -> TableSuite:
    """One split of a processed dataset (grmodel/features.py contract).

    Column dtypes are checked while reading (a Parquet column has one dtype); the rules over
    all feature fields are one derived column each (see :func:`first_offending_field`).
    """
    names = [spec.name for spec in schema.fields]
    masked = [spec for spec in schema.fields if spec.mask_column]
    masks = [spec.mask_column for spec in masked]
    columns: dict[str, ColumnKind] = {name: "int" for name in (*names, *masks)}
    columns.update({"label": "float", "duration_s": "float", "timestamp": "float",
                    "user_id_raw": "int", "item_id_raw": "int"})
    minimum = bounds.min_train_rows if split == "train" else bounds.min_eval_rows
    checks: list[Check] = [row_count((minimum, 10**12)), columns_present(list(columns))]
    if expected_rows is not None:
        checks.append(Check("expect_table_row_count_to_equal", {"value": expected_rows},
                            f"rows = {expected_rows:,} as manifest.json records"))
    checks += [
        no_offending_field("id_outside_encoder",
                           "every id is within its field's encoder size [0, cardinality)"),
        not_null("label"),
        non_negative_finite("label"),
        not_null("duration_s"),
        between(
            "label_tail_ratio", 0, bounds.label_tail_factor,
            f"label <= {bounds.label_tail_factor:g} x the split's"
            f" {bounds.label_tail_quantile:g} quantile (real KuaiRec: max 120 x p99)",
            ("label",),
        ),
        Check("expect_table_row_count_to_be_between", {"min_value": bounds.few_rows},
              f"at least {bounds.few_rows:,} rows (fewer give noisy metrics)", "warning",
              tag="few_rows"),
        Check("expect_column_unique_value_count_to_be_between",
              {"column": "label", "min_value": 2},
              "the label is not constant (a model of it collapses to that constant)", "warning"),
    ]
    sizes = np.asarray([spec.cardinality for spec in schema.fields])
    derived = [
        DerivedColumn("id_outside_encoder", tuple(names), lambda f: first_offending_field(
            f, names, lambda col, k: (col < 0) | (col >= sizes[k]))),
        DerivedColumn("label_tail_ratio", ("label",), functools.partial(
            label_tail_ratio, quantile=bounds.label_tail_quantile)),
    ]
    if masked:
        checks += [
            no_offending_field("mask_not_0_or_1", "every <field>_mask is 0 or 1"),
            no_offending_field("mask_disagrees_with_id", "every <field>_mask = (<field> != 0)"),
        ]
        derived += [
            DerivedColumn("mask_not_0_or_1", tuple(masks), lambda f: first_offending_field(
                f, masks, lambda col, k: (col != 0) & (col != 1))),
            DerivedColumn("mask_disagrees_with_id", (*(s.name for s in masked), *masks),
                          lambda f: first_offending_field(f, masks, lambda col, k: (
                              (col != 0) != (f[masked[k].name] != 0)))),
        ]
    if split != "train" and overlap == "pairs" and train_pairs is not None:
        derived.append(DerivedColumn(
            "pair_in_train", RAW_ID_COLUMNS,
            lambda f: np.isin(pair_keys(f), train_pairs).astype(np.uint8),
        ))
        checks.append(in_set("pair_in_train", (0,), "no (user, item) pair is also in train",
                             RAW_ID_COLUMNS))
    if split != "train" and overlap == "time" and train_max_timestamp is not None:
        checks.append(Check(
            "expect_column_min_to_be_between",
            {"column": "timestamp", "min_value": train_max_timestamp},
            f"{split} starts after train ends (timestamp >= {train_max_timestamp:.3f})",
        ))
    return TableSuite(f"{split}.parquet", columns, tuple(checks), tuple(derived))


# ---------------------------------------------------------------------------- token labels


@dataclass(frozen=True)
class TokenBounds:
    """Bounds of the tokenised-label suite."""

    rtol: float = 1e-3  # decoded sequence vs the scaled label

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def tokens_suite(vocab_size: int, max_len: int, bounds: TokenBounds) -> TableSuite:
    """One row per label sequence: columns built by ``runner.token_frame``."""
    samples = ("label", "decoded")
    checks = (
        not_null("label"),
        non_negative_finite("label"),
        between("length", 0, max_len, f"at most max_len={max_len} tokens per label", samples),
        between("min_token", 0, None, "token ids >= 0"),
        between("max_token", 0, vocab_size - 1,
                f"token ids within the vocabulary [0, {vocab_size})", ("label",)),
        in_set("first_token", (SOS,), "every sequence starts with <sos>"),
        in_set("eos_after_tokens", (1,), "<eos> follows the value tokens", ("label", "length")),
        between("relative_error", 0, bounds.rtol,
                f"decoded value within {bounds.rtol:.1%} of the scaled label", samples),
    )
    return TableSuite("tokens", {"label": "float"}, checks)


def report_kwargs(check: Check, max_items: int = 10) -> dict[str, Any]:
    """A check's arguments for the report, long value lists shortened."""
    out: dict[str, Any] = {}
    for key, value in check.kwargs.items():
        if isinstance(value, list | tuple | np.ndarray) and len(value) > max_items:
            head = ", ".join(str(v) for v in list(value)[:max_items])
            value = f"[{head}, ... ({len(value)} values)]"
        out[key] = value
    return out

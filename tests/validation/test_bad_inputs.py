"""The corpus of bad raw inputs (tests/validation/bad_inputs/): each case names the exact
checks that catch it, and nothing else may fail."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grmodel.validation import RawBounds, validate_raw_kuairec

BAD_INPUTS = Path(__file__).parent / "bad_inputs"
BIG, USERS, ITEMS = "big_matrix.csv", "user_features.csv", "item_categories.csv"
# The corpus files are a few dozen rows: row-count bounds to match (the rest are defaults).
BOUNDS = RawBounds(big_rows=(20, 1000), small_rows=(20, 1000), user_rows=(2, 100),
                   item_rows=(2, 100))
GOOD = {BIG: "good_matrix.csv", USERS: "good_users.csv", ITEMS: "good_items.csv"}


@dataclass
class Case:
    replace: dict[str, str]  # raw file -> corpus file standing in for it
    failed: set[tuple[str, str]]  # (table, check id) of every failed check
    warnings: set[tuple[str, str]] = field(default_factory=set)
    side_files: bool = False  # validate the side files too (needed for referential checks)


def between(column: str) -> str:
    return f"expect_column_values_to_be_between({column})"


def typed(column: str) -> str:
    return f"expect_column_values_to_be_in_type_list({column})"


INTERACTION_COLUMNS = ("user_id", "video_id", "play_duration", "video_duration", "date",
                       "timestamp", "watch_ratio")
CASES = {
    "good": Case({}, set()),
    "missing_column": Case({BIG: "missing_column.csv"},
                           {(BIG, "expect_table_columns_to_match_set")}),
    "nan_ids": Case({BIG: "nan_ids.csv"},
                    {(BIG, "expect_column_values_to_not_be_null(user_id)")}),
    # The ratio is computed from the bad duration, so both are out of range.
    "negative_durations": Case({BIG: "negative_durations.csv"},
                               {(BIG, between("play_duration")), (BIG, between("watch_ratio"))}),
    "watch_ratio_contradicts_durations": Case({BIG: "watch_ratio_contradicts_durations.csv"},
                                              {(BIG, between("watch_ratio_deviation"))}),
    "wrong_dtype": Case({BIG: "wrong_dtype.csv"}, {(BIG, typed("video_id"))}),
    "empty_file": Case({BIG: "empty_file.csv"}, {(BIG, "expect_file_to_have_a_header")}),
    "truncated": Case({BIG: "truncated.csv"},
                      {(BIG, "expect_csv_rows_to_have_header_field_count")}),
    # Two exports concatenated: the second header is a data row that parses in no column.
    "duplicate_header_row": Case({BIG: "duplicate_header_row.csv"},
                                 {(BIG, typed(c)) for c in INTERACTION_COLUMNS}),
    "duplicate_column_name": Case({BIG: "duplicate_column_name.csv"},
                                  {(BIG, "expect_csv_header_names_to_be_unique")}),
    "ids_out_of_range": Case({BIG: "ids_out_of_range.csv"},
                             {(BIG, "expect_column_values_to_be_null(unlisted_video_id)")},
                             side_files=True),
    "label_spike": Case({BIG: "label_spike.csv"},
                        {(BIG, "expect_column_quantile_values_to_be_between(watch_ratio)")}),
    # Without a window the days come from the data: the stray 2021 row leaves a gap of months.
    "date_out_of_range": Case({BIG: "date_out_of_range.csv"},
                              {(BIG, between("days_since_previous_day"))}),
    "unknown_category": Case({USERS: "unknown_category_users.csv"},
                             {(USERS, "expect_column_values_to_be_in_set(user_active_degree)")},
                             side_files=True),
    "bad_tags": Case({ITEMS: "bad_tags_items.csv"},
                     {(ITEMS, "expect_column_values_to_match_regex(feat)"),
                      (ITEMS, between("feat_max_tag"))}, side_files=True),
    # The issue-15 repro: 3 plays of 1e12 ms with matching ratios. In 40 rows they also move
    # the ratio's 0.97 quantile; among KuaiRec's 12.5M rows only the caps catch them.
    "absurd_play_duration": Case({BIG: "absurd_play_duration.csv"},
                                 {(BIG, between("play_duration")), (BIG, between("watch_ratio")),
                                  (BIG, "expect_column_quantile_values_to_be_between(watch_ratio)")}),
    "video_too_long": Case({BIG: "video_too_long.csv"}, {(BIG, between("video_duration"))}),
    "watch_ratio_above_cap": Case({BIG: "watch_ratio_above_cap.csv"},
                                  {(BIG, between("watch_ratio"))}),
    # A few percent of missing profile fields is real KuaiRec; a quarter is worth a warning.
    "sparse_profile": Case({USERS: "sparse_profile_users.csv"}, set(),
                           {(USERS, "expect_column_values_to_be_null(onehot_missing)")},
                           side_files=True),
}


def run_case(case: Case, raw: Path):
    raw.mkdir()
    for target, source in {**GOOD, **case.replace}.items():
        shutil.copyfile(BAD_INPUTS / source, raw / target)
    files = (BIG, USERS, ITEMS) if case.side_files else (BIG,)
    return validate_raw_kuairec(raw, BOUNDS, files=files)


@pytest.mark.parametrize("name", list(CASES))
def test_each_bad_input_is_caught_by_its_expectation(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    report = run_case(case, tmp_path / "raw")
    assert report.failed_ids() == case.failed
    assert {(c.table, c.check_id) for c in report.warnings} == case.warnings
    assert report.success == (not case.failed)
    for failure in report.failures:  # every failure says where, what and how much
        assert failure.rule and failure.table
        assert failure.samples or failure.observed_value is not None or failure.note


def test_failures_name_the_column_count_share_and_samples(tmp_path: Path) -> None:
    report = run_case(CASES["watch_ratio_contradicts_durations"], tmp_path / "raw")
    (failure,) = report.failures
    assert failure.column == "watch_ratio_deviation"
    assert failure.unexpected_count == 3 and failure.element_count == 40
    assert failure.unexpected_percent == pytest.approx(7.5)
    # The rows behind the samples show the durations that contradict the ratio.
    row = failure.sample_rows[0]
    assert row["watch_ratio"] == pytest.approx(1.5 * row["play_duration"] / row["video_duration"],
                                               rel=1e-3)
    assert "watch_ratio_deviation" in report.summary()


def test_reader_failures_name_the_file_and_values(tmp_path: Path) -> None:
    report = run_case(CASES["wrong_dtype"], tmp_path / "raw")
    (failure,) = report.failures
    assert (failure.column, failure.unexpected_count) == ("video_id", 2)
    assert sorted(failure.samples) == ["12.5", "v123"]
    skipped = {c.check_id for c in report.checks if c.status == "skipped"}
    assert between("video_id") in skipped  # checks that need the numbers do not run

    report = run_case(CASES["truncated"], tmp_path / "raw2")
    (failure,) = report.failures
    assert failure.engine == "reader" and failure.unexpected_count == 1
    assert failure.samples[0].startswith("3,3,9600")


def test_written_report_lists_failures(tmp_path: Path) -> None:
    report = run_case(CASES["negative_durations"], tmp_path / "raw")
    paths = report.write(tmp_path / "out")
    record = json.loads(paths["json"].read_text())
    assert record["success"] is False
    failed = [c for c in record["checks"] if c["status"] == "failed"]
    assert {c["column"] for c in failed} == {"play_duration", "watch_ratio"}
    assert all(c["unexpected_count"] == 2 and c["samples"] for c in failed)
    assert record["params"]["big_rows"] == [20, 1000]  # the bounds used are recorded
    markdown = paths["md"].read_text()
    assert "0 <= play_duration <= 86,400,000 ms" in markdown and "-22000" in markdown
    assert "<td>play_duration</td>" in paths["html"].read_text()


def test_a_window_bounds_the_dates(tmp_path: Path) -> None:
    """Given a run's window, a row outside it fails the date and timestamp checks too."""
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copyfile(BAD_INPUTS / "date_out_of_range.csv", raw / BIG)
    window = dataclasses.replace(BOUNDS, first_day="2020-07-05", last_day="2020-07-31")
    report = validate_raw_kuairec(raw, window, files=(BIG,))
    assert report.failed_ids() == {(BIG, between("date")), (BIG, between("timestamp")),
                                   (BIG, between("days_since_previous_day"))}
    assert report.params["first_day"] == "2020-07-05"

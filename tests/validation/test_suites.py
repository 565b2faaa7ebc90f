"""Suite builders: severities, derived columns and the rules they encode (no GX needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grmodel.features import FeatureSchema, FieldSpec
from grmodel.validation.checks import (
    Check,
    TableSuite,
    between,
    first_offending_field,
    not_null,
    report_kwargs,
)
from grmodel.validation.processed import ProcessedBounds, label_tail_ratio, processed_split_suite
from grmodel.validation.raw import RawBounds, interaction_suite, watch_ratio_deviation


def test_mostly_makes_a_check_a_warning() -> None:
    assert not_null("x").effective_severity == "error"
    assert not_null("x", mostly=0.9).effective_severity == "warning"
    assert Check("expect_x", {}, "r", severity="warning").effective_severity == "warning"


def test_a_suite_rejects_duplicate_checks() -> None:
    with pytest.raises(ValueError, match="duplicate checks"):
        TableSuite("t", {}, (between("a", 0, 1), between("a", 2, 3)))


def test_watch_ratio_deviation() -> None:
    frame = pd.DataFrame({
        "play_duration": [500, 0, 700, 100, 100],
        "video_duration": [1000, 1000, 1000, 0, -5],
        "watch_ratio": [0.5, 0.0, 0.75, 1.0, 1.0],
    })
    deviation = watch_ratio_deviation(frame)
    assert deviation[:2].tolist() == [0.0, 0.0]
    assert deviation[2] == pytest.approx(0.05 / 0.7)
    assert np.isnan(deviation[3:]).all()  # no duration to compare with: the duration checks say so


def test_first_offending_field_names_the_first_bad_column() -> None:
    frame = pd.DataFrame({"a": [0, 9, 9, 0], "b": [0, 9, 0, 9]})
    column = first_offending_field(frame, ["a", "b"], lambda col, k: col > 5)
    assert pd.Series(column).tolist()[1:] == ["a", "a", "b"]
    assert pd.isna(column[0])


def test_bounds_flow_into_the_checks() -> None:
    bounds = RawBounds(big_rows=(5, 6), max_share_above_spike=0.01, spike_threshold=8.0)
    suite = interaction_suite("big_matrix.csv", bounds, bounds.big_rows)
    by_id = {c.check_id: c for c in suite.checks}
    assert by_id["expect_table_row_count_to_be_between"].kwargs == {"min_value": 5, "max_value": 6}
    spike = by_id["expect_column_quantile_values_to_be_between(watch_ratio)"].kwargs
    assert spike["quantile_ranges"] == {"quantiles": [0.99], "value_ranges": [[None, 8.0]]}


def test_processed_suite_follows_the_schema() -> None:
    schema = FeatureSchema((FieldSpec("user_id", "user", 10),
                            FieldSpec("tag", "item", 5, mask_column="tag_mask")))
    suite = processed_split_suite("test", schema, 100, ProcessedBounds(), overlap="time",
                                  train_max_timestamp=50.0)
    ids = {c.check_id for c in suite.checks}
    assert "expect_column_values_to_be_null(mask_disagrees_with_id)" in ids
    assert "expect_column_min_to_be_between(timestamp)" in ids
    assert suite.columns["tag_mask"] == "int" and suite.columns["label"] == "float"
    frame = pd.DataFrame({"user_id": [0, 10, 3], "tag": [0, 2, 7], "tag_mask": [0, 1, 1],
                          "label": [1.0, 2.0, 3.0]})
    derived = {d.name: d.compute(frame) for d in suite.derived}
    assert list(derived["id_outside_encoder"].astype(object)[1:]) == ["user_id", "tag"]
    assert "expect_table_row_count_to_be_between[few_rows]" in ids  # the warning beside the gate


def test_label_tail_ratio_flags_a_thousandfold_outlier() -> None:
    labels = np.r_[np.linspace(1.0, 60.0, 9_997), [1e9, 1e9, 1e9]]  # corrupt 1e12 ms plays
    ratio = label_tail_ratio(pd.DataFrame({"label": labels}), 0.999)
    assert (ratio[-3:] > 1_000).all() and (ratio[:-3] < 1.01).all()
    assert np.isnan(label_tail_ratio(pd.DataFrame({"label": np.zeros(5)}), 0.999)).all()


def test_long_value_lists_are_shortened_for_the_report() -> None:
    check = Check("expect_column_values_to_be_in_set", {"column": "v", "value_set": list(range(50))},
                  "r")
    assert report_kwargs(check)["value_set"].endswith("... (50 values)]")

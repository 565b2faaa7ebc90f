import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grmodel.config import EvalConfig
from grmodel.evaluate import format_table
from grmodel.metrics import (
    distribution_summary,
    evaluate_predictions,
    interval_mae,
    mae,
    xauc,
    xauc_sampled,
)


def brute_force_xauc(y, p):
    """O(n^2) XAUC, both variants, straight from their definitions (docs/method.md, Task and
    metrics)."""
    n = len(y)
    order = np.argsort(-p, kind="stable")
    ys = y[order]
    upper = np.triu(np.ones((n, n), bool), k=1)
    reference = np.count_nonzero((ys[:, None] > ys[None, :]) & upper) / (n * (n - 1) / 2)
    if np.unique(y).size < 2:
        reference = math.nan  # every label equal: no pair to rank, no score
    distinct = (y[:, None] != y[None, :]) & upper
    same_way = np.sign(y[:, None] - y[None, :]) == np.sign(p[:, None] - p[None, :])
    tied = p[:, None] == p[None, :]
    score = np.where(tied, 0.5, same_way.astype(float))
    tie_aware = score[distinct].sum() / distinct.sum() if distinct.any() else math.nan
    return reference, tie_aware


def assert_same(actual, expected):
    assert (math.isnan(actual) and math.isnan(expected)) or actual == pytest.approx(expected, abs=1e-12)


@st.composite
def tied_pairs(draw):
    """Labels and predictions with many ties (small value sets), negative values, -0.0."""
    n = draw(st.integers(2, 120))
    label_values = draw(st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=6))
    special = st.sampled_from([0.0, -0.0, 1.5, -2.0, 3.25, 1e-300, 7.0])
    pred_values = draw(st.lists(special | st.floats(-10, 10), min_size=1, max_size=8))
    y = np.array(draw(st.lists(st.sampled_from(label_values), min_size=n, max_size=n)))
    p = np.array(draw(st.lists(st.sampled_from(pred_values), min_size=n, max_size=n)))
    return y, p


@settings(max_examples=100, deadline=None)
@given(tied_pairs())
def test_xauc_matches_brute_force_with_ties(pair):
    y, p = pair
    reference, tie_aware = brute_force_xauc(y, p)
    assert_same(xauc(y, p), reference)
    assert_same(xauc(y, p, "tie_aware"), tie_aware)


@pytest.mark.parametrize("n", [17, 33, 1000, 2500])
def test_xauc_matches_brute_force_over_many_merge_levels(n):
    rng = np.random.default_rng(n)
    y = rng.integers(0, n // 3 + 2, n).astype(float)
    p = y + rng.normal(0, n / 4, n)
    p[rng.random(n) < 0.2] = 1.0  # a block of prediction ties
    reference, tie_aware = brute_force_xauc(y, p)
    assert_same(xauc(y, p), reference)
    assert_same(xauc(y, p, "tie_aware"), tie_aware)


def test_xauc_with_float_near_ties():
    # Predictions equal in their high bits but not exactly equal, mixed with exact ties.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 20, 800).astype(float)
    p = 1.0 + rng.integers(0, 40, 800) * 1e-13
    reference, tie_aware = brute_force_xauc(y, p)
    assert_same(xauc(y, p), reference)
    assert_same(xauc(y, p, "tie_aware"), tie_aware)


def test_xauc_extremes():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert xauc(y, y) == 1.0
    assert xauc(y, -y) == 0.0
    assert xauc(y, np.zeros(4), "tie_aware") == 0.5
    # Reference semantics: prediction ties keep input order (here: ascending labels -> 0).
    assert xauc(y, np.zeros(4)) == 0.0
    assert xauc(y[::-1], np.zeros(4)) == 1.0
    same = np.ones(4)  # every label equal: no pair to rank, so neither variant scores it
    assert math.isnan(xauc(same, y))
    assert math.isnan(xauc(same, y, "tie_aware"))


def test_xauc_sampled_close_to_exact():
    rng = np.random.default_rng(0)
    y = np.floor(rng.lognormal(2, 1, 20_000))  # integer seconds: many label ties
    p = np.round(y + rng.normal(0, 4, y.size))  # rounded: prediction ties
    exact = xauc(y, p, "tie_aware")
    estimate = xauc_sampled(y, p, n_pairs=1_000_000, seed=1)
    assert estimate == pytest.approx(exact, abs=5e-3)
    assert xauc_sampled(y, p, n_pairs=1000, seed=5) == xauc_sampled(y, p, n_pairs=1000, seed=5)
    assert math.isnan(xauc_sampled(np.ones(10), p[:10], n_pairs=100))


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        (np.ones(3), np.ones(4), "3 rows but y_pred has 4"),
        (np.array([1.0, np.nan]), np.ones(2), "y_true has 1 non-finite"),
        (np.ones(2), np.array([np.inf, 1.0]), "y_pred has 1 non-finite"),
        (np.ones((2, 2)), np.ones((2, 2)), "1-D"),
        (np.ones(1), np.ones(1), "at least 2 rows"),
    ],
)
def test_xauc_validates_inputs(y, p, message):
    with pytest.raises(ValueError, match=message):
        xauc(y, p)
    with pytest.raises(ValueError, match="variant"):
        xauc(np.ones(3), np.ones(3), variant="other")


def test_mae():
    assert mae(np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 1.0])) == pytest.approx(4 / 3)
    with pytest.raises(ValueError, match="at least 1"):
        mae(np.array([]), np.array([]))


def test_interval_mae_bins():
    y = np.array([0.0, 1.9, 2.0, 3.0, 5.9, 6.0, 100.0])
    p = y + np.array([1.0, 1.0, 2.0, 4.0, 3.0, 5.0, 7.0])
    bins = interval_mae(y, p, width=2.0, n_intervals=4)
    assert [(b["lo"], b["hi"], b["count"]) for b in bins] == [
        (0.0, 2.0, 2),
        (2.0, 4.0, 2),
        (4.0, 6.0, 1),
        (6.0, None, 2),
    ]
    assert [b["mae"] for b in bins] == [1.0, 3.0, 3.0, 6.0]
    empty = interval_mae(np.array([0.5]), np.array([0.5]), width=1.0, n_intervals=3)
    assert [b["mae"] for b in empty] == [0.0, None, None]
    with pytest.raises(ValueError, match="non-negative"):
        interval_mae(np.array([-1.0]), np.array([0.0]), width=1.0, n_intervals=2)
    with pytest.raises(ValueError, match="width"):
        interval_mae(y, p, width=0.0, n_intervals=2)


def test_distribution_summary_shares_edges():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    p = np.array([1.0, 1.0, 1.0, 9.0])
    summary = distribution_summary(y, p, bins=3)
    assert summary["histogram"]["edges"] == [0.0, 3.0, 6.0, 9.0]
    assert summary["histogram"]["true"] == [3, 1, 0]
    assert summary["histogram"]["pred"] == [3, 0, 1]
    assert summary["true"]["mean"] == 1.5 and summary["true"]["var"] == pytest.approx(1.25)
    assert summary["pred"]["std"] == pytest.approx(np.std(p))
    assert summary["true"]["quantiles"]["p50"] == 1.5
    assert summary["pred"]["quantiles"]["p100"] == 9.0


def test_evaluate_predictions():
    rng = np.random.default_rng(0)
    y = rng.exponential(5, 500)
    p = y + rng.normal(0, 1, 500)
    config = EvalConfig(xauc="tie_aware", interval_width=2.0, n_intervals=5, histogram_bins=10)
    result = evaluate_predictions(y, p, config, oracle=np.floor(y))
    assert {"mae", "xauc", "xauc_tie_aware", "n", "intervals", "distribution"} <= set(result)
    assert result["n"] == 500
    assert result["mae"] == mae(y, p)
    assert result["xauc"] == result["xauc_tie_aware"] == xauc(y, p, "tie_aware")
    assert len(result["intervals"]) == 5
    assert len(result["distribution"]["histogram"]["true"]) == 10
    assert result["oracle"]["mae"] == mae(y, np.floor(y))
    reference = evaluate_predictions(y, p, EvalConfig())
    assert reference["xauc"] == xauc(y, p) and reference["xauc_variant"] == "reference"
    assert "oracle" not in reference


def test_headline_xauc_is_tie_aware_when_labels_tie():
    p = np.array([0.1, 0.4, 0.3, 0.9])
    tied = evaluate_predictions(np.array([0.0, 0.0, 1.0, 2.0]), p, EvalConfig())
    assert tied["labels_tie"] and tied["xauc_headline_variant"] == "tie_aware"
    assert tied["xauc_variant"] == "reference"  # the configured variant stays available
    assert tied["xauc"] == xauc(np.array([0.0, 0.0, 1.0, 2.0]), p, "reference")
    distinct = evaluate_predictions(np.array([0.0, 0.5, 1.0, 2.0]), p, EvalConfig())
    assert not distinct["labels_tie"] and distinct["xauc_headline_variant"] == "reference"


def test_evaluation_table_names_the_variants_and_marks_the_headline():
    y, p = np.array([0.0, 0.0, 1.0, 2.0]), np.array([0.1, 0.4, 0.3, 0.9])
    table = format_table({"m": evaluate_predictions(y, p, EvalConfig())})
    assert "| model | MAE ↓ | XAUC reference ↑ | **XAUC tie-aware (headline)** ↑ | rows |" in table
    table = format_table({"m": evaluate_predictions(y, p, EvalConfig(xauc="tie_aware"))})
    assert "XAUC reference" not in table and "**XAUC tie-aware (headline)** ↑" in table



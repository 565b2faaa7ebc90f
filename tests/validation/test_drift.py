"""The drift check: a new run's window and test day against a reference profile, with
great_expectations' KL-divergence, quantile and mean expectations (tiny data, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from grmodel.data.profile import profile_dataset, profile_split
from grmodel.validation.drift import (
    DRIFT,
    NO_DRIFT,
    NO_REFERENCE,
    DriftBounds,
    DriftFailed,
    check_drift,
    kl_bound,
    quantile_ranges,
)
from grmodel.validation.report import ValidationFailed

CHAMPION = {"description": "champion version 1 of days"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, days_dataset):
    """The champion's reference: the profile of the run it was trained on (seed 0)."""
    return profile_split(days_dataset(tmp_path_factory.mktemp("champion") / "d", seed=0))


def _check(tmp_path, days_dataset, reference, seed=1, bounds=None, **plants):
    data = days_dataset(tmp_path / f"new-{seed}", seed=seed, **plants)
    return check_drift(data, reference, bounds, about=CHAMPION)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_same_distribution_run_passes(tmp_path, days_dataset, reference, seed):
    """No false alarm on five new runs from the same world, though every run has its own
    vocabulary (bench/bench_drift.py measures the rate over many generated days)."""
    report = _check(tmp_path, days_dataset, reference, seed)
    assert report.verdict == NO_DRIFT, report.summary()
    assert report.success and report.counts()["failed"] == 0
    compared = {(c["table"], c["column"]) for c in report.comparisons}
    assert {("train.parquet", "label"), ("test.parquet", "label"), ("test.parquet", "tier"),
            ("test.parquet", "user_id"), ("test.parquet", "duration_s")} <= compared


def test_a_test_split_of_its_own_population_is_compared_with_the_references(tmp_path,
                                                                           days_dataset):
    """Under the authors protocol (KuaiRec's test split is the small matrix, other users and
    videos) the test split is compared with the reference's test split: the same data checked
    against its own reference compares each split with itself. A forward split's test day is
    compared with the training rows, as is every split against a reference that kept only
    those."""
    data = days_dataset(tmp_path / "d", seed=7)
    manifest = json.loads((data / "manifest.json").read_text())
    full = profile_dataset(data)

    def label_rows(reference, kind):
        manifest.setdefault("splits", {})["kind"] = kind
        (data / "manifest.json").write_text(json.dumps(manifest))
        report = check_drift(data, reference, about=CHAMPION)
        assert report.verdict == NO_DRIFT, report.summary()
        return {c["table"]: c["reference_rows"] for c in report.comparisons
                if c["column"] == "label"}

    assert label_rows(full, "authors") == {
        "train.parquet": full["rows"], "valid.parquet": full["splits"]["valid"]["rows"],
        "test.parquet": full["splits"]["test"]["rows"]}
    assert set(label_rows(full, "forward").values()) == {full["rows"]}
    train_only = {k: v for k, v in full.items() if k != "splits"}
    assert set(label_rows(train_only, "authors").values()) == {full["rows"]}


def test_moved_ids_are_not_drift(tmp_path, days_dataset, reference):
    """New users sorted into the middle of the vocabulary move every later id; compared as
    raw values nothing drifted but the share of unseen users, which stays under the bound."""
    report = _check(tmp_path, days_dataset, reference, users=230)
    assert report.verdict == NO_DRIFT, report.summary()
    user = next(c for c in report.comparisons
                if (c["table"], c["column"]) == ("test.parquet", "user_id"))
    assert 0 < user["unseen"] < 0.5


def test_a_reordered_vocabulary_is_not_drift(tmp_path, days_dataset, reference):
    """The same raw values under other ids (the run's vocabulary in reverse order): the check
    reads raw values through the run's own encoders, so nothing moved."""
    data = days_dataset(tmp_path / "new", seed=1)
    encoders = json.loads((data / "encoders.json").read_text())
    values = encoders["fields"]["tier"]["values"]
    encoders["fields"]["tier"]["values"] = values[::-1]
    (data / "encoders.json").write_text(json.dumps(encoders))
    for split in ("train", "valid", "test"):
        frame = pd.read_parquet(data / f"{split}.parquet")
        ids = frame["tier"].to_numpy()
        frame["tier"] = np.where(ids >= 2, len(values) + 3 - ids, ids).astype(ids.dtype)
        frame.to_parquet(data / f"{split}.parquet", index=False)
    report = check_drift(data, reference, about=CHAMPION)
    assert report.verdict == NO_DRIFT, report.summary()


def test_label_shift_on_the_test_day_is_flagged(tmp_path, days_dataset, reference):
    report = _check(tmp_path, days_dataset, reference, label_scale=1.5)
    assert report.verdict == DRIFT and not report.success
    assert report.drifted() == {"test.parquet": ["label"]}
    # On a 300-row day the quantiles' sampling band is wide: the KL divergence flags it.
    failed = {c.check_id for c in report.failures}
    assert "expect_column_kl_divergence_to_be_less_than(label)" in failed
    label = next(c for c in report.comparisons
                 if (c["table"], c["column"]) == ("test.parquet", "label"))
    assert label["new_mean"] / label["reference_mean"] == pytest.approx(1.5, rel=0.15)
    assert label["kl"] > label["kl_bound"]


def test_label_shift_in_the_window_is_flagged(tmp_path, days_dataset, reference):
    report = _check(tmp_path, days_dataset, reference, label_scale=1.5, everywhere=True)
    assert report.drifted() == {"train.parquet": ["label"], "valid.parquet": ["label"],
                                "test.parquet": ["label"]}
    # On the 1,800 training rows the quantiles move out of their band too.
    failed = {(c.table, c.check_id) for c in report.failures}
    assert ("train.parquet", "expect_column_quantile_values_to_be_between(label)") in failed


def test_a_feature_mix_change_is_flagged(tmp_path, days_dataset, reference):
    """Gold users make 60% of the test day's rows instead of 20%: the tier mix (and the users
    and their labels with it) moved."""
    report = _check(tmp_path, days_dataset, reference, gold_share=0.6)
    assert "tier" in report.drifted().get("test.parquet", [])
    assert "train.parquet" not in report.drifted()
    tier = next(c for c in report.comparisons
                if (c["table"], c["column"]) == ("test.parquet", "tier"))
    assert tier["new"].startswith("gold")


def test_a_new_category_is_flagged_and_counted_unseen(tmp_path, days_dataset, reference):
    report = _check(tmp_path, days_dataset, reference, new_tier_share=0.6)
    failed = {(c.table, c.check_id) for c in report.failures}
    assert ("test.parquet", "expect_column_kl_divergence_to_be_less_than(tier)") in failed
    assert ("test.parquet", "expect_column_mean_to_be_between(tier:unseen)") in failed
    assert report.drifted() == {"test.parquet": ["tier"]}


def test_thresholds_widen_for_small_samples_only():
    bounds = DriftBounds()
    assert kl_bound(bounds, 10, 10**7, 10**7, 1e-4) == bounds.max_kl
    small = kl_bound(bounds, 10, 100, 10_000, 1e-4)
    assert small > 0.1
    reference = list(np.quantile(np.random.default_rng(0).lognormal(2, 1, 10_000),
                                 np.linspace(0, 1, 101)))
    wide, narrow = (quantile_ranges(bounds, reference, n, 10**6, 1e-4) for n in (100, 10**6))
    for p, w, m in zip(bounds.quantiles, wide, narrow):
        q = np.interp(p, np.linspace(0, 1, 101), reference)
        assert w[0] <= m[0] <= q <= m[1] <= w[1]


def test_policy_warn_keeps_going_and_stop_raises_one_line(tmp_path, days_dataset, reference):
    report = _check(tmp_path, days_dataset, reference, label_scale=1.5)
    assert report.apply_policy("warn") is report
    with pytest.raises(DriftFailed) as caught:
        report.apply_policy("stop")
    message = str(caught.value)
    assert isinstance(caught.value, ValidationFailed) and "\n" not in message
    assert "champion version 1 of days" in message and "test.parquet: label" in message
    assert "KL divergence from the reference <= 0.05" in message
    assert "drift_policy=stop" in message
    with pytest.raises(ValueError, match="drift_policy 'halt'"):
        report.apply_policy("halt")


def test_no_reference_passes_and_says_so(tmp_path, days_dataset):
    data = days_dataset(tmp_path / "d", seed=1)
    report = check_drift(data, None, no_reference="no champion of days yet")
    assert report.verdict == NO_REFERENCE and report.success and report.checks == []
    assert report.apply_policy("stop") is report
    assert "no reference (no champion of days yet)" in report.summary()
    paths = report.write(tmp_path / "out")
    record = json.loads(paths["json"].read_text())
    assert record["verdict"] == NO_REFERENCE and record["reference"] is None


def test_report_files(tmp_path, days_dataset, reference):
    report = _check(tmp_path, days_dataset, reference, label_scale=1.5)
    paths = report.write(tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["drift.html", "drift.json", "drift.md"]
    record = json.loads(paths["json"].read_text())
    assert record["suite"] == "drift" and record["verdict"] == DRIFT
    assert record["drifted"] == {"test.parquet": ["label"]}
    assert record["params"]["max_kl"] == 0.05
    label = [c for c in record["comparisons"] if c["column"] == "label"]
    assert [c["status"] for c in label] == ["ok", "ok", "drift"]  # train, valid, test
    markdown = paths["md"].read_text()
    assert markdown.startswith("# Drift check: drift\n")
    assert "## Reference and new data" in markdown and "champion version 1 of days" in markdown
    assert "<h2>Reference and new data</h2>" in paths["html"].read_text()


def test_columns_the_reference_lacks_are_reported_skipped(tmp_path, days_dataset, reference):
    trimmed = {**reference, "columns": {k: v for k, v in reference["columns"].items()
                                        if k != "tier"}}
    report = _check(tmp_path, days_dataset, trimmed)
    skipped = {(c.table, c.column): c.note for c in report.checks if c.status == "skipped"}
    assert "no profile" in skipped[("test.parquet", "tier")]
    assert "bucketed" in skipped[("test.parquet", "price_bucket")]
    assert report.verdict == NO_DRIFT


def test_too_few_rows_are_not_compared(tmp_path, days_dataset, reference):
    report = _check(tmp_path, days_dataset, reference, bounds=DriftBounds(min_rows=1000),
                    label_scale=1.5)
    assert report.verdict == NO_DRIFT  # the 300-row test day is not judged
    notes = {c.note for c in report.checks
             if c.status == "skipped" and c.table == "test.parquet"}
    assert any("fewer than min_rows=1000" in n for n in notes)


def test_large_splits_are_compared_on_a_seeded_sample(tmp_path, days_dataset, reference):
    bounds = DriftBounds(max_rows=500)
    first, again = (_check(tmp_path / name, days_dataset, reference, bounds=bounds)
                    for name in ("a", "b"))
    rows = {t["name"]: t["rows"] for t in first.tables}
    assert rows == {"train.parquet": 500, "valid.parquet": 300, "test.parquet": 300}
    assert first.verdict == NO_DRIFT
    assert [c["kl"] for c in first.comparisons] == [c["kl"] for c in again.comparisons]

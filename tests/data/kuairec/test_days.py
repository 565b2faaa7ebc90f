"""Logs by day: the days generator (synth/days.py) and the forward split of the ingest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grmodel.data.io import DataSpecError, RawDataError
from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.data.kuairec.schema import DAY_FILE, ITEM_FILE, ORACLE_FILE, USER_FILE
from grmodel.data.kuairec.synth import DaysConfig, SynthConfig, generate_days

DAYS = [f"2020-09-{d:02d}" for d in range(6, 11)]


def _day(logs: Path, day: str, name: str = DAY_FILE) -> pd.DataFrame:
    return pd.read_csv(logs / f"date={day}" / name)


def test_each_day_holds_its_rows_side_files_and_oracle(tiny_days: Path) -> None:
    assert sorted(p.name for p in tiny_days.iterdir()) == [f"date={d}" for d in DAYS]
    users = [set(_day(tiny_days, d, USER_FILE)["user_id"]) for d in DAYS]
    videos = [set(_day(tiny_days, d, ITEM_FILE)["video_id"]) for d in DAYS]
    for k, day in enumerate(DAYS):
        rows = _day(tiny_days, day)
        assert (rows["date"] == int(day.replace("-", ""))).all()
        assert rows["timestamp"].is_monotonic_increasing
        assert set(rows["user_id"]) <= users[k] and set(rows["video_id"]) <= videos[k]
        oracle = _day(tiny_days, day, ORACLE_FILE)
        pairs = rows[["user_id", "video_id"]].drop_duplicates()
        assert len(oracle) == len(pairs)
        if k:  # the side files only grow: new users and videos arrive
            assert users[k - 1] <= users[k] and videos[k - 1] <= videos[k]
    assert len(users[-1]) > len(users[0]) and len(videos[-1]) > len(videos[0])
    record = json.loads((tiny_days / "date=2020-09-10" / "synth.json").read_text())
    assert record["drifts"] == ["label_shift", "feature_mix", "new_category"]


def test_the_planted_drifts_show_in_the_data(tiny_days: Path) -> None:
    # The label shift: the oracle's median ratio of one (user, video) pair is x1.5 later.
    before = _day(tiny_days, DAYS[2], ORACLE_FILE).set_index(["user_id", "video_id"])
    after = _day(tiny_days, DAYS[3], ORACLE_FILE).set_index(["user_id", "video_id"])
    both = before.index.intersection(after.index)
    ratio = after.loc[both, "oracle_mean_ratio"] / before.loc[both, "oracle_mean_ratio"]
    assert len(both) and np.allclose(ratio, 1.5, rtol=1e-5)
    # The new category: tag 30 appears from the fourth day only.
    def has_new_tag(day: str) -> bool:
        return _day(tiny_days, day, ITEM_FILE)["feat"].str.contains(r"\b30\b").any()
    assert [has_new_tag(d) for d in DAYS] == [False, False, False, True, True]
    # The feature mix: rows of high_active users are far more common from the third day.
    profile = _day(tiny_days, DAYS[-1], USER_FILE).set_index("user_id")["user_active_degree"]

    def share(day: str) -> float:
        return float((profile.loc[_day(tiny_days, day)["user_id"]] == "high_active").mean())
    assert share(DAYS[2]) > 1.5 * max(share(DAYS[0]), share(DAYS[1]))


def test_the_days_are_seeded(tmp_path: Path, tiny_days: Path) -> None:
    config = DaysConfig(days=5, mix_day=2, label_shift_day=3, new_category_day=3)
    generate_days(tmp_path / "again", SynthConfig.preset("tiny"), config)
    for day in DAYS:
        for name in (DAY_FILE, USER_FILE, ITEM_FILE, ORACLE_FILE):
            same = tmp_path / "again" / f"date={day}" / name
            assert same.read_bytes() == (tiny_days / f"date={day}" / name).read_bytes()
    with pytest.raises(DataSpecError, match="label_shift_day"):
        generate_days(tmp_path / "bad", SynthConfig.preset("tiny"),
                      DaysConfig(days=3, label_shift_day=3))


def test_the_forward_split_trains_on_the_window_and_tests_on_as_of(tiny_days: Path,
                                                                   tmp_path: Path) -> None:
    config = IngestConfig(split="forward", as_of="2020-09-09", window_days=2)
    manifest = ingest_kuairec(tiny_days, tmp_path / "p", config)
    window = manifest["window"]
    assert window["train_dates"] == ["2020-09-07", "2020-09-07"]
    assert window["valid_dates"] == ["2020-09-08", "2020-09-08"]
    assert window["test_date"] == "2020-09-09"
    assert list(window["rows_by_day"]) == ["2020-09-07", "2020-09-08", "2020-09-09"]
    assert sorted(manifest["raw"]) == ["date=2020-09-07", "date=2020-09-08", "date=2020-09-09"]
    assert "date=2020-09-09/user_features.csv" in manifest["sources"]
    rows = {s: pd.read_parquet(tmp_path / "p" / f"{s}.parquet") for s in ("train", "valid", "test")}
    for split, day in (("train", "2020-09-07"), ("valid", "2020-09-08"), ("test", "2020-09-09")):
        logged = _day(tiny_days, day)
        assert len(rows[split]) == len(logged) == window["rows_by_day"][day]
        assert rows[split]["timestamp"].is_monotonic_increasing
    # Test rows carry the test day's oracle (under the shifted law from 2020-09-09).
    assert rows["test"]["oracle_median"].notna().all()
    # Users who first appear after the training days are out of vocabulary.
    assert manifest["splits"]["per_split"]["test"]["oov_user_rows"] > 0
    assert manifest["generator"]["drifts"] == ["label_shift", "feature_mix", "new_category"]


def test_forward_defaults_and_refusals(tiny_days: Path, tiny_raw: Path, tmp_path: Path) -> None:
    everything = ingest_kuairec(tiny_days, tmp_path / "all", IngestConfig(split="forward"))
    assert everything["window"]["as_of"] == "2020-09-10"
    assert everything["window"]["window_days"] == 4
    with pytest.raises(RawDataError, match="no partition for 2020-09-05"):
        ingest_kuairec(tiny_days, tmp_path / "x", IngestConfig(split="forward", as_of="2020-09-10",
                                                               window_days=5))
    with pytest.raises(DataSpecError, match="small matrix"):
        ingest_kuairec(tiny_days, tmp_path / "y", IngestConfig())
    with pytest.raises(DataSpecError, match="split forward only"):
        IngestConfig(as_of="2020-09-10").validate()
    # The flat layout splits by the timestamps' days; rows without one are dropped.
    flat = ingest_kuairec(tiny_raw, tmp_path / "flat",
                          IngestConfig(split="forward", as_of="2020-09-05", window_days=3))
    assert flat["window"]["train_dates"] == ["2020-09-02", "2020-09-03"]
    assert flat["splits"]["nan_timestamp_rows"]["policy"].startswith("dropped")
    assert sum(flat["splits"]["rows"].values()) == sum(flat["window"]["rows_by_day"].values())

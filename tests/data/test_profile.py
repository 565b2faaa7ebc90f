"""The reference profile of a processed split: raw values, never a run's own ids."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from grmodel.data.profile import (
    MISSING,
    PROFILE_FILE,
    UNKNOWN,
    ProfileError,
    profile_split,
    read_profile,
    write_profile,
)
from grmodel.features import read_encoders, read_split


def test_profile_counts_raw_values_and_numbers(tmp_path, days_dataset):
    data = days_dataset(tmp_path / "d", seed=1)
    profile = profile_split(data)
    train = read_split(data, "train")
    columns = profile["columns"]
    assert profile["rows"] == len(train) and profile["split"] == "train"

    # tier: the encoder's ids turned back into the raw words, counted.
    vocab = read_encoders(data)["fields"]["tier"]["values"]
    words = pd.Series(np.array(vocab, dtype=object)[train["tier"].to_numpy() - 2])
    expected = words.value_counts()
    tier = columns["tier"]
    assert tier["kind"] == "categorical" and tier["source"] == "tier"
    assert dict(zip(tier["values"], tier["counts"])) == expected.to_dict()
    assert tier["values"][0] == expected.idxmax() and tier["missing"] == 0

    # user_id: read from user_id_raw, where the split keeps the raw ids.
    user = columns["user_id"]
    assert user["source"] == "user_id_raw"
    raw_counts = train["user_id_raw"].value_counts()
    assert dict(zip(user["values"], user["counts"])) == {str(k): v for k, v in raw_counts.items()}

    label = columns["label"]
    assert label["role"] == "label" and label["count"] == len(train)
    assert label["quantiles"][50] == pytest.approx(np.quantile(train["label"], 0.5))
    assert sum(label["counts"]) == len(train) and len(label["counts"]) == len(label["edges"]) + 1
    assert label["mean"] == pytest.approx(train["label"].mean())

    bucket = columns["price_bucket"]
    assert bucket["kind"] == "skipped" and "bucketed" in bucket["reason"]


def test_profiles_of_two_runs_agree_though_their_ids_differ(tmp_path, days_dataset):
    """Extra users whose ids sort in the middle move every later id of run b: its id
    counts differ from run a's, its raw-value counts match on the shared users."""
    a = days_dataset(tmp_path / "a", seed=1)
    b = days_dataset(tmp_path / "b", seed=1, users=260)
    ids_a = read_split(a, "train")["user_id"].to_numpy()
    ids_b = read_split(b, "train")["user_id"].to_numpy()
    assert not np.array_equal(ids_a, ids_b)
    raw_a, raw_b = (read_split(d, "train")["user_id_raw"] for d in (a, b))
    vocab_b = read_encoders(b)["fields"]["user_id"]["values"]
    assert np.array_equal(np.array(vocab_b)[ids_b - 2], raw_b.to_numpy())
    tier_a, tier_b = (profile_split(d)["columns"]["tier"] for d in (a, b))
    assert set(tier_a["values"]) == set(tier_b["values"]) == {"bronze", "silver", "gold"}
    assert raw_a.nunique() < raw_b.nunique()


def test_missing_and_unknown_values(tmp_path, days_dataset):
    data = days_dataset(tmp_path / "d", seed=2)
    train = read_split(data, "train")
    train.loc[:9, "tier"] = 0  # id 0: missing
    train.loc[10:14, "tier"] = 1  # id 1: a value this run's training never had
    train.to_parquet(data / "train.parquet", index=False)
    tier = profile_split(data)["columns"]["tier"]
    assert tier["missing"] == 10 and MISSING not in tier["values"]
    assert tier["count"] == len(train) - 10
    assert dict(zip(tier["values"], tier["counts"]))[UNKNOWN] == 5


def test_profile_file_round_trip_and_bad_files(tmp_path, days_dataset):
    data = days_dataset(tmp_path / "d", seed=3)
    path = write_profile(data, tmp_path / "model")
    assert path.name == PROFILE_FILE
    written = read_profile(tmp_path / "model")
    assert written["columns"].keys() == profile_split(data)["columns"].keys()
    assert written["splits"]["test"]["columns"] == profile_split(data, "test")["columns"]
    assert read_profile(tmp_path / "nothing") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / PROFILE_FILE).write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(ProfileError, match="format 'other/1'"):
        read_profile(tmp_path / "bad")
    (tmp_path / "bad" / PROFILE_FILE).write_text("{not json")
    with pytest.raises(ProfileError, match="not readable JSON"):
        read_profile(tmp_path / "bad")


def test_dataset_without_encoders_profiles_what_it_can(tmp_path, days_dataset):
    data = days_dataset(tmp_path / "d", seed=4)
    (data / "encoders.json").unlink()
    columns = profile_split(data)["columns"]
    assert columns["user_id"]["kind"] == "categorical"  # its raw column
    assert columns["tier"]["kind"] == "skipped" and "no encoder" in columns["tier"]["reason"]

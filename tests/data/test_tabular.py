from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from grmodel.data.io import DataSpecError, RawDataError
from grmodel.data.tabular import TabularSpec, build_tabular
from grmodel.features import FeatureSchema, label_array, read_manifest, read_split


def _ltv_table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A lifetime-value-like table: heavy-tailed non-negative label driven by the fields."""
    rng = np.random.default_rng(seed)
    country = rng.choice(["fr", "de", "us", "br", None], n, p=[0.2, 0.2, 0.3, 0.25, 0.05])
    channel = rng.choice(["ads", "organic", "referral"], n)
    age = rng.normal(35, 10, n)
    age[rng.random(n) < 0.02] = np.nan
    effect = pd.Series(country).map({"fr": 0.2, "de": 0.1, "us": 0.5, "br": -0.3}).fillna(0)
    ltv = np.exp(effect.to_numpy() + rng.normal(0, 1, n)) * (rng.random(n) > 0.3)
    return pd.DataFrame({
        "customer_id": np.arange(n) % 900,
        "country": country,
        "channel": channel,
        "age": age,
        "first_category": rng.choice([f"cat{i}" for i in range(12)], n),
        "price": rng.lognormal(3, 1, n),
        "signup": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**7, n), "s"),
        "ltv_90d": ltv,
    })


def _spec(tmp_path: Path, source: str, **changes) -> Path:
    spec = {
        "name": "ltv",
        "source": source,
        "label": "ltv_90d",
        "user": {"categorical": ["customer_id", "country", "channel"], "numeric": {"age": 8}},
        "item": {"categorical": ["first_category"], "numeric": {"price": 10}},
        "timestamp": "signup",
        "split": {"kind": "random", "valid_fraction": 0.1, "test_fraction": 0.2, "seed": 3},
    }
    spec.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_parquet_spec_builds_the_processed_contract(tmp_path: Path) -> None:
    _ltv_table().to_parquet(tmp_path / "ltv.parquet")
    manifest = build_tabular(_spec(tmp_path, "ltv.parquet"), tmp_path / "out")
    assert manifest == read_manifest(tmp_path / "out")
    schema = FeatureSchema.from_dict(manifest["features"])
    assert schema.names == ["customer_id", "country", "channel", "age", "first_category", "price"]
    assert [f.side for f in schema.fields] == ["user"] * 4 + ["item"] * 2
    rows = manifest["splits"]["rows"]
    assert rows == {"train": 2100, "valid": 300, "test": 600}
    for split in ("train", "valid", "test"):
        frame = read_split(tmp_path / "out", split)
        schema.arrays(frame, split)
        label_array(frame)
        assert frame.duration_s.isna().all() and frame.timestamp.notna().all()
        np.testing.assert_array_equal(frame.country_mask, frame.country != 0)
    assert manifest["duration_available"] is False
    assert manifest["encoders"]["age"]["buckets"] == 8
    assert manifest["label"]["train_stats"]["count"] == 2100
    test = read_split(tmp_path / "out", "test")
    assert ((test.age == 0) == test.age_mask.eq(0)).all() and (test.age == 0).any()


def test_a_hash_drawn_random_split(tmp_path: Path) -> None:
    """split.draw hash: each row by hash_split of its index (binomial sizes), recorded."""
    from grmodel.data import splits

    table = _ltv_table()
    table.to_parquet(tmp_path / "ltv.parquet")
    manifest = build_tabular(_spec(tmp_path, "ltv.parquet", split={
        "kind": "random", "valid_fraction": 0.1, "test_fraction": 0.2, "seed": 3,
        "draw": "hash"}), tmp_path / "out")
    assert manifest["options"]["split"]["draw"] == "hash"
    codes = splits.hash_split(np.arange(len(table)), 0.1, 0.2, seed=3)
    rows = manifest["splits"]["rows"]
    n = len(table)
    for name, fraction in (("train", 0.7), ("valid", 0.1), ("test", 0.2)):
        assert rows[name] == (codes == splits.SPLIT_CODES[name]).sum()
        assert abs(rows[name] - fraction * n) < 5 * np.sqrt(n * fraction * (1 - fraction))
    test = read_split(tmp_path / "out", "test")
    np.testing.assert_array_equal(test.user_id_raw, table.customer_id[codes == splits.TEST])


def test_csv_spec_with_a_chronological_split(tmp_path: Path) -> None:
    table = _ltv_table()
    table.to_csv(tmp_path / "ltv.csv", index=False)
    spec = _spec(tmp_path, "ltv.csv", split={"kind": "chronological", "valid_fraction": 0.1,
                                             "test_fraction": 0.1})
    manifest = build_tabular(spec, tmp_path / "out")
    frames = {s: read_split(tmp_path / "out", s) for s in ("train", "valid", "test")}
    assert frames["train"].timestamp.max() <= frames["valid"].timestamp.min()
    assert frames["valid"].timestamp.max() <= frames["test"].timestamp.min()
    # Countries missing in the CSV (empty fields) are id 0, unseen customers id 1.
    everything = pd.concat(frames.values())
    assert (everything.country == 0).sum() == table.country.isna().sum()
    seen = set(frames["train"].user_id_raw)
    test = frames["test"]
    unseen = ~test.user_id_raw.isin(seen)
    assert (test.customer_id[unseen] == 1).all() and (test.customer_id[~unseen] >= 2).all()
    assert manifest["splits"]["kind"] == "chronological"


def test_split_column(tmp_path: Path) -> None:
    table = _ltv_table(600)
    table["fold"] = np.where(np.arange(600) < 400, "train", np.where(np.arange(600) < 500,
                                                                      "valid", "test"))
    table.to_parquet(tmp_path / "ltv.parquet")
    spec = _spec(tmp_path, "ltv.parquet", split={"kind": "column", "column": "fold"})
    assert build_tabular(spec, tmp_path / "out")["splits"]["rows"] == {
        "train": 400, "valid": 100, "test": 100}
    table["fold"] = table["fold"].replace({"valid": "Validation"})
    table.loc[450:, "fold"] = table.loc[450:, "fold"].replace({"Validation": " val"})
    table.to_parquet(tmp_path / "ltv.parquet")
    assert build_tabular(spec, tmp_path / "aliases")["splits"]["rows"] == {
        "train": 400, "valid": 100, "test": 100}
    table.loc[5, "fold"] = "holdout"
    table.to_parquet(tmp_path / "ltv.parquet")
    with pytest.raises(RawDataError, match=r"'fold'.*holdout.*one of train, valid, test"):
        build_tabular(spec, tmp_path / "out2")


def test_bad_label_and_missing_column_fail_cleanly(tmp_path: Path) -> None:
    table = _ltv_table(300)
    table.loc[7, "ltv_90d"] = -1.0
    table.to_parquet(tmp_path / "ltv.parquet")
    with pytest.raises(RawDataError, match=r"ltv.parquet: column 'ltv_90d'.*non-negative"):
        build_tabular(_spec(tmp_path, "ltv.parquet"), tmp_path / "out")
    table.drop(columns=["price"]).to_parquet(tmp_path / "ltv.parquet")
    with pytest.raises(RawDataError, match=r"missing column\(s\) \['price'\]"):
        build_tabular(_spec(tmp_path, "ltv.parquet"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ltv.parquet", "spec.yaml"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "unknown key"),
        ({"user": {"categorical": []}}, "user needs at least one field"),
        ({"item": {"numeric": {"price": 1}}}, "bucket count"),
        ({"split": {"kind": "chronological"}, "timestamp": None}, "needs 'timestamp'"),
        ({"split": {"kind": "random", "valid_fraction": 0.6, "test_fraction": 0.5}},
         "fractions"),
        ({"split": {"kind": "random", "draw": "shuffle"}},
         "split.draw 'shuffle': expected permutation or hash"),
        ({"item": {"categorical": ["label"]}}, "reserved"),
        ({"label": None}, "'label' is required"),
        ({"oracle": "channel"}, "oracle column 'channel' is a feature or the label"),
        ({"oracle": "ltv_90d"}, "oracle column 'ltv_90d' is a feature or the label"),
    ],
)
def test_bad_specs_are_refused(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(DataSpecError, match=message):
        TabularSpec.from_yaml(_spec(tmp_path, "x.parquet", **changes))


def test_an_oracle_column_reaches_the_test_split_only(tmp_path: Path) -> None:
    table = _ltv_table()
    table["true_median"] = table["ltv_90d"] / 2  # traceable to the row's own label
    table.to_parquet(tmp_path / "ltv.parquet")
    manifest = build_tabular(_spec(tmp_path, "ltv.parquet", oracle="true_median"), tmp_path / "out")
    assert manifest["oracle"]["present"] and manifest["oracle"]["columns"] == ["oracle_median"]
    test = read_split(tmp_path / "out", "test")
    assert np.array_equal(test["oracle_median"], test["label"] / 2)
    assert "oracle_median" not in read_split(tmp_path / "out", "train").columns
    assert "true_median" not in {f["name"] for f in manifest["features"]["fields"]}

    table.loc[5, "true_median"] = -1.0
    table.to_parquet(tmp_path / "ltv.parquet")
    with pytest.raises(RawDataError, match="'true_median'.*non-negative"):
        build_tabular(_spec(tmp_path, "ltv.parquet", oracle="true_median"), tmp_path / "out2")


def test_duplicate_header_of_a_used_column_is_refused(tmp_path: Path, caplog) -> None:
    table = _ltv_table(300)
    text = table.to_csv(index=False).splitlines()
    # A header named twice: the second ltv_90d column must not silently lose to the first.
    head = text[0].split(",")
    head[head.index("price")] = "ltv_90d"
    (tmp_path / "ltv.csv").write_text("\n".join([",".join(head), *text[1:]]) + "\n")
    spec = _spec(tmp_path, "ltv.csv", item={"categorical": ["first_category"]})
    with pytest.raises(RawDataError, match=r"\['ltv_90d'\] appear more than once.*unique column"):
        build_tabular(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # A repeated column the spec does not read builds, with a warning.
    head[3] = head[5] = "extra"  # age and price, which this spec does not read
    (tmp_path / "ltv.csv").write_text("\n".join([",".join(head), *text[1:]]) + "\n")
    spec = _spec(tmp_path, "ltv.csv", user={"categorical": ["customer_id", "channel"]},
                 item={"categorical": ["first_category"]})
    build_tabular(spec, tmp_path / "out")
    assert "['extra'] appear more than once" in caplog.text


def test_one_row_table_and_constant_label_warn(tmp_path: Path, caplog) -> None:
    table = _ltv_table(300)
    table["ltv_90d"] = 4.0
    table.to_parquet(tmp_path / "ltv.parquet")
    manifest = build_tabular(_spec(tmp_path, "ltv.parquet"), tmp_path / "out")
    warnings = manifest["warnings"]
    assert any("training label is constant (4)" in w for w in warnings)
    assert any("the valid split has 30 rows" in w for w in warnings)
    assert all(w in caplog.text for w in warnings)

    _ltv_table(1).to_parquet(tmp_path / "one.parquet")
    manifest = build_tabular(_spec(tmp_path, "one.parquet"), tmp_path / "out1")
    assert any("the train split has 1 rows" in w for w in manifest["warnings"])
    assert any("label is constant" in w for w in manifest["warnings"])


def test_a_uri_source_stays_a_uri_and_the_pandas_engine_says_which_engine_reads_it(
        tmp_path: Path) -> None:
    spec = TabularSpec.from_yaml(_spec(tmp_path, "s3a://logs/ltv/"))
    assert spec.source_path == "s3a://logs/ltv/"  # not joined to the spec's folder
    assert TabularSpec.from_yaml(_spec(tmp_path, "ltv.parquet")).source_path == tmp_path / "ltv.parquet"
    with pytest.raises(DataSpecError, match="read with --engine spark"):
        build_tabular(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _by_day(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """The table in date=YYYY-MM-DD Parquet partitions, one per signup day (2024-01-01 ..)."""
    table = _ltv_table()
    table["day"] = table["signup"].dt.strftime("%Y-%m-%d")
    root = tmp_path / "by_day"
    for day, part in table.groupby("day", sort=True):
        (root / f"date={day}").mkdir(parents=True)
        part.drop(columns=["day"]).to_parquet(root / f"date={day}" / "part-0.parquet")
    return root, table


def test_a_forward_split_over_day_partitions_reads_its_window(tmp_path: Path) -> None:
    root, table = _by_day(tmp_path)
    split = {"kind": "forward", "as_of": "2024-03-10", "window_days": 7}
    manifest = build_tabular(_spec(tmp_path, "by_day", split=split), tmp_path / "out")
    assert manifest["window"]["train_dates"] == ["2024-03-03", "2024-03-08"]
    assert manifest["window"]["test_date"] == "2024-03-10"
    per_day = table.groupby("day").size()
    assert manifest["splits"]["rows"] == {
        "train": int(per_day["2024-03-03":"2024-03-08"].sum()),
        "valid": int(per_day["2024-03-09"]), "test": int(per_day["2024-03-10"])}
    # Only the window's partitions are read, each recorded by its content hash.
    assert sorted(manifest["source"]["partitions"]) == [
        f"date=2024-03-{d:02d}" for d in range(3, 11)]
    assert manifest["source"]["rows"] == sum(manifest["splits"]["rows"].values())
    # Without partitions the day is the timestamp's UTC day: the same rows in each split.
    table.drop(columns=["day"]).to_parquet(tmp_path / "t.parquet")
    flat = build_tabular(_spec(tmp_path, "t.parquet", split=split), tmp_path / "flat")
    assert flat["splits"]["rows"] == manifest["splits"]["rows"]
    with pytest.raises(DataSpecError, match="window_days=1"):
        build_tabular(_spec(tmp_path, "by_day", split={**split, "window_days": 1}),
                      tmp_path / "bad")
    with pytest.raises(DataSpecError, match="forward only"):
        build_tabular(_spec(tmp_path, "by_day", split={"kind": "random", "as_of": "2024-03-10"}),
                      tmp_path / "bad")

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grmodel.data.io import DataSpecError, RawDataError
from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.features import FeatureSchema, label_array, read_manifest, read_split
from grmodel.outputs import OutputError


def _splits(processed: Path) -> dict[str, pd.DataFrame]:
    return {name: read_split(processed, name) for name in ("train", "valid", "test")}


def test_output_follows_the_processed_contract(tiny_processed: Path) -> None:
    manifest = read_manifest(tiny_processed)
    schema = FeatureSchema.from_dict(manifest["features"])
    assert schema.names[:2] == ["user_id", "user_active_degree"]
    assert {"item_id", "item_tag_0", "item_tag_3", "item_duration_bucket"} <= set(schema.names)
    assert {f.table_name for f in schema.fields if f.name.startswith("item_tag_")} == {"item_tag"}
    for name, frame in _splits(tiny_processed).items():
        source = f"{name}.parquet"
        ids, mask = schema.arrays(frame, source)  # ids within every encoder's size
        assert (ids >= 0).all()
        for spec in schema.fields:
            if spec.mask_column:
                np.testing.assert_array_equal(frame[spec.mask_column], frame[spec.name] != 0)
        label_array(frame, source=source)
        np.testing.assert_allclose(frame.label, frame.watch_time_s)
        for column in ("watch_ratio", "duration_s", "timestamp", "user_id_raw", "item_id_raw"):
            assert column in frame
        assert ("oracle_median" in frame) == (name == "test")
    assert set(manifest) >= {"format", "features", "options", "sources", "raw", "label",
                             "splits", "encoders", "oracle", "generator", "columns"}
    assert manifest["raw"]["big_matrix"]["exact_duplicate_rows"] > 0
    assert manifest["generator"]["config"]["preset_name"] == "tiny"
    assert manifest["oracle"]["present"] is True
    assert len(manifest["sources"]["big_matrix.csv"]["sha256"]) == 64


def test_authors_protocol_rows_and_oracle_units(tiny_raw: Path, tiny_processed: Path) -> None:
    splits = _splits(tiny_processed)
    big = pd.read_csv(tiny_raw / "big_matrix.csv")
    small = pd.read_csv(tiny_raw / "small_matrix.csv")
    assert len(splits["train"]) + len(splits["valid"]) == len(big)
    assert len(splits["valid"]) == round(0.1 * len(big))
    assert len(splits["test"]) == len(small)
    test = splits["test"]
    oracle = pd.read_csv(tiny_raw / "oracle.csv").rename(
        columns={"user_id": "user_id_raw", "video_id": "item_id_raw"})
    joined = test.merge(oracle, on=["user_id_raw", "item_id_raw"], how="left")
    np.testing.assert_allclose(joined.oracle_median, joined.oracle_median_ratio * joined.duration_s)
    # The oracle floor: its MAE beats the constant training median.
    y = test.label.to_numpy()
    train_median = np.median(splits["train"].label)
    assert np.abs(y - test.oracle_median).mean() < np.abs(y - train_median).mean()


def test_no_test_information_reaches_encoders_or_label_statistics(raw_copy: Path,
                                                                  tiny_processed: Path,
                                                                  tmp_path: Path) -> None:
    """Rewrite every test row (new users, new videos, other labels): the encoders, the
    label statistics and the training split must not change."""
    small_path = raw_copy / "small_matrix.csv"
    small = pd.read_csv(small_path)
    small["play_duration"] = small.play_duration * 3 + 1000
    small["watch_ratio"] = small.play_duration / small.video_duration
    small.loc[::2, "user_id"] = 90_000  # a user no file knows
    small.loc[::3, "video_id"] = 80_000  # a video no file knows
    small.to_csv(small_path, index=False)
    (raw_copy / "oracle.csv").unlink()  # the edited rows have no oracle
    edited = tmp_path / "edited"
    manifest = ingest_kuairec(raw_copy, edited, IngestConfig())
    original = read_manifest(tiny_processed)
    assert manifest["encoders"] == original["encoders"]
    assert manifest["features"] == original["features"]
    assert manifest["label"]["train_stats"] == original["label"]["train_stats"]
    for split in ("train", "valid"):
        pd.testing.assert_frame_equal(read_split(edited, split), read_split(tiny_processed, split))
    test = read_split(edited, "test")
    assert (test.loc[test.user_id_raw == 90_000, "user_id"] == 1).all()  # out of vocabulary
    assert (test.loc[test.user_id_raw == 90_000, "user_active_degree"] == 0).all()  # missing
    assert (test.loc[test.item_id_raw == 80_000, "item_id"] == 1).all()
    assert manifest["splits"]["per_split"]["test"]["oov_user_rows"] == (
        test.user_id_raw == 90_000).sum()
    assert manifest["oracle"]["present"] is False


def test_chronological_split_is_ordered_and_drops_untimed_rows(tiny_raw: Path,
                                                               tmp_path: Path) -> None:
    manifest = ingest_kuairec(tiny_raw, tmp_path / "p", IngestConfig(split="chronological"))
    splits = _splits(tmp_path / "p")
    for frame in splits.values():
        assert frame.timestamp.notna().all() and frame.timestamp.is_monotonic_increasing
    assert splits["train"].timestamp.max() <= splits["valid"].timestamp.min()
    assert splits["valid"].timestamp.max() <= splits["test"].timestamp.min()
    untimed = manifest["raw"]["small_matrix"]["nan_timestamp_rows"]
    assert untimed > 0 and manifest["splits"]["dropped_rows"] == untimed
    assert "dropped" in manifest["splits"]["nan_timestamp_rows"]["policy"]
    timed = sum(len(f) for f in splits.values())
    assert len(splits["test"]) == round(0.1 * timed) == len(splits["valid"])


def test_random_split_and_dedupe(tiny_raw: Path, tmp_path: Path) -> None:
    manifest = ingest_kuairec(tiny_raw, tmp_path / "p", IngestConfig(split="random", dedupe=True))
    raw = manifest["raw"]
    total = sum(m["rows"] - m["dropped_duplicate_rows"] for m in raw.values())
    assert raw["big_matrix"]["dropped_duplicate_rows"] == raw["big_matrix"]["exact_duplicate_rows"]
    rows = manifest["splits"]["rows"]
    assert sum(rows.values()) == total
    assert rows["valid"] == round(0.1 * total) == rows["test"]
    train = read_split(tmp_path / "p", "train")
    assert not train.duplicated(["user_id_raw", "item_id_raw", "timestamp", "label"]).any()


def test_hash_drawn_splits(tiny_raw: Path, tmp_path: Path) -> None:
    """split_draw=hash: the valid rows of the authors protocol are the big-matrix rows whose
    hash_uniform is below valid_fraction (binomial sizes); random places both matrices."""
    from grmodel.data import splits as split_codes

    big = pd.read_csv(tiny_raw / "big_matrix.csv")
    small = pd.read_csv(tiny_raw / "small_matrix.csv")
    manifest = ingest_kuairec(tiny_raw, tmp_path / "a", IngestConfig(split_draw="hash", seed=5))
    assert manifest["options"]["split_draw"] == "hash"
    assert "seeded hash" in manifest["splits"]["protocol"]
    splits = _splits(tmp_path / "a")
    assert len(splits["test"]) == len(small)
    assert len(splits["train"]) + len(splits["valid"]) == len(big)
    drawn = split_codes.hash_split(np.arange(len(big)), 0.1, 0.0, seed=5) == split_codes.VALID
    np.testing.assert_array_equal(splits["valid"].user_id_raw, big.user_id[drawn])
    np.testing.assert_array_equal(splits["valid"].timestamp, big.timestamp[drawn])
    assert abs(len(splits["valid"]) - 0.1 * len(big)) < 5 * np.sqrt(len(big) * 0.09)

    manifest = ingest_kuairec(tiny_raw, tmp_path / "r",
                              IngestConfig(split="random", split_draw="hash", dedupe=True))
    rows = manifest["splits"]["rows"]
    total = sum(m["rows"] - m["dropped_duplicate_rows"] for m in manifest["raw"].values())
    assert sum(rows.values()) == total
    for name, fraction in (("valid", 0.1), ("test", 0.1)):
        assert abs(rows[name] - fraction * total) < 5 * np.sqrt(total * fraction * (1 - fraction))
    assert rows["valid"] != round(0.1 * total) or rows["test"] != round(0.1 * total)
    with pytest.raises(DataSpecError, match="split_draw"):
        IngestConfig(split_draw="shuffle").validate()  # type: ignore[arg-type]


def test_valid_can_be_the_newest_big_matrix_rows(tiny_raw: Path, tmp_path: Path) -> None:
    manifest = ingest_kuairec(tiny_raw, tmp_path / "p", IngestConfig(valid_mode="last"))
    splits = _splits(tmp_path / "p")
    assert splits["train"].timestamp.max() <= splits["valid"].timestamp.min()
    assert "newest" in manifest["splits"]["protocol"]


def test_label_modes(tiny_raw: Path, tmp_path: Path) -> None:
    ingest_kuairec(tiny_raw, tmp_path / "ratio", IngestConfig(label_mode="watch_ratio"))
    test = read_split(tmp_path / "ratio", "test")
    np.testing.assert_allclose(test.label, test.watch_ratio)
    oracle = pd.read_csv(tiny_raw / "oracle.csv")
    assert np.isin(test.oracle_median.round(12), oracle.oracle_median_ratio.round(12)).all()

    manifest = ingest_kuairec(tiny_raw, tmp_path / "norm", IngestConfig(label_mode="norm_ratio"))
    assert manifest["label"]["leaks_test_statistics"] is True
    assert manifest["oracle"]["present"] is False and "norm_ratio" in manifest["oracle"]["reason"]
    frames = _splits(tmp_path / "norm")
    both = pd.concat(frames.values())
    assert both.label.between(0, 1).all()
    per_video = both.groupby("item_id_raw").label.agg(["min", "max"])
    assert (per_video["min"] == 0).all()
    assert "oracle_median" not in frames["test"]


def test_real_side_files_ingest_cleanly(real_side_dir: Path, tmp_path: Path) -> None:
    generate_kuairec(tmp_path / "raw", SynthConfig.preset("tiny", side_dir=str(real_side_dir)))
    manifest = ingest_kuairec(tmp_path / "raw", tmp_path / "p", IngestConfig())
    assert manifest["side_coverage"]["users_without_features"] == 0
    assert manifest["side_coverage"]["videos_without_categories"] == 0
    train = read_split(tmp_path / "p", "train")
    real = pd.read_csv(real_side_dir / "user_features.csv").set_index("user_id")
    users = train.drop_duplicates("user_id_raw").set_index("user_id_raw")
    # UNKNOWN activity and empty one-hot fields (floats in pandas) become id 0 (missing).
    unknown = real.loc[users.index, "user_active_degree"] == "UNKNOWN"
    assert ((users.user_active_degree == 0) == unknown).all()
    gaps = real.loc[users.index, "onehot_feat4"].isna()
    assert ((users.onehot_feat4 == 0) == gaps).all()
    assert (users.onehot_feat0 >= 2).all()
    assert manifest["encoders"]["item_tag_0"]["known_values"] <= 31


def test_item_daily_features_add_item_fields(raw_copy: Path, tmp_path: Path) -> None:
    videos = pd.read_csv(raw_copy / "item_categories.csv").video_id
    daily = pd.DataFrame({
        "video_id": np.repeat(videos, 2), "date": np.tile([20200706, 20200705], len(videos)),
        "author_id": np.repeat(videos % 7, 2), "video_type": "NORMAL",
        "upload_type": np.tile(["Later", "First"], len(videos)), "music_id": np.nan,
        "play_cnt": 5,
    })
    daily.to_csv(raw_copy / "item_daily_features.csv", index=False)
    manifest = ingest_kuairec(raw_copy, tmp_path / "p", IngestConfig())
    assert manifest["side_coverage"]["item_daily_features"] is True
    train = read_split(tmp_path / "p", "train")
    assert manifest["encoders"]["item_author_id"]["known_values"] == 7
    assert manifest["encoders"]["item_upload_type"]["known_values"] == 1  # earliest date only
    assert (train.item_music_id == 0).all() and (train.item_music_id_mask == 0).all()


def test_integers_written_as_floats_are_accepted(raw_copy: Path, tiny_processed: Path,
                                                 tmp_path: Path) -> None:
    small = pd.read_csv(raw_copy / "small_matrix.csv")
    small["video_id"] = small.video_id.astype(float)  # written as 12.0
    small.to_csv(raw_copy / "small_matrix.csv", index=False)
    assert ".0," in (raw_copy / "small_matrix.csv").read_text().splitlines()[1]
    ingest_kuairec(raw_copy, tmp_path / "p", IngestConfig())
    pd.testing.assert_frame_equal(read_split(tmp_path / "p", "test"),
                                  read_split(tiny_processed, "test"))


# ------------------------------------------------------------------------------- bad input


def _assert_fails_cleanly(raw: Path, out: Path, *fragments: str) -> None:
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("previous output")
    with pytest.raises(RawDataError) as info:
        ingest_kuairec(raw, out, IngestConfig())
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    # No partial output: the old directory is untouched and no temporary sibling is left.
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def _edit(path: Path, transform) -> None:
    path.write_text(transform(path.read_text()))


def test_missing_file(raw_copy: Path, tmp_path: Path) -> None:
    (raw_copy / "user_features.csv").unlink()
    _assert_fails_cleanly(raw_copy, tmp_path / "out" / "p", "user_features.csv", "not found",
                          "rule")


def test_missing_column(raw_copy: Path, tmp_path: Path) -> None:
    _edit(raw_copy / "big_matrix.csv", lambda t: t.replace("video_duration", "duration", 1))
    _assert_fails_cleanly(raw_copy, tmp_path / "out" / "p", "big_matrix.csv", "video_duration",
                          "rule: required columns")


def test_wrong_type(raw_copy: Path, tmp_path: Path) -> None:
    lines = (raw_copy / "small_matrix.csv").read_text().splitlines()
    cells = lines[5].split(",")
    cells[3] = "long"
    lines[5] = ",".join(cells)
    (raw_copy / "small_matrix.csv").write_text("\n".join(lines) + "\n")
    _assert_fails_cleanly(raw_copy, tmp_path / "out" / "p", "small_matrix.csv",
                          "'video_duration'", "rule")


def test_non_integer_id(raw_copy: Path, tmp_path: Path) -> None:
    lines = (raw_copy / "small_matrix.csv").read_text().splitlines()
    lines[3] = "1.5" + lines[3][lines[3].index(","):]
    (raw_copy / "small_matrix.csv").write_text("\n".join(lines) + "\n")
    _assert_fails_cleanly(raw_copy, tmp_path / "out" / "p", "small_matrix.csv", "'user_id'",
                          "rule: integer")


def test_negative_duration(raw_copy: Path, tmp_path: Path) -> None:
    big = pd.read_csv(raw_copy / "big_matrix.csv")
    big.loc[10, "play_duration"] = -5
    big.to_csv(raw_copy / "big_matrix.csv", index=False)
    _assert_fails_cleanly(raw_copy, tmp_path / "out" / "p", "big_matrix.csv", "'play_duration'",
                          "non-negative")


def test_empty_file(raw_copy: Path, tmp_path: Path) -> None:
    (raw_copy / "item_categories.csv").write_text("")
    _assert_fails_cleanly(raw_copy, tmp_path / "out" / "p", "item_categories.csv", "empty",
                          "rule")


def test_header_only_file(raw_copy: Path, tmp_path: Path) -> None:
    _edit(raw_copy / "small_matrix.csv", lambda t: t.splitlines()[0] + "\n")
    _assert_fails_cleanly(raw_copy, tmp_path / "out" / "p", "small_matrix.csv", "no data rows")


def test_truncated_file(raw_copy: Path, tmp_path: Path) -> None:
    text = (raw_copy / "big_matrix.csv").read_text()
    (raw_copy / "big_matrix.csv").write_text(text[: len(text) // 2].rsplit(",", 3)[0])
    _assert_fails_cleanly(raw_copy, tmp_path / "out" / "p", "big_matrix.csv", "columns",
                          "truncated")


def test_oracle_must_cover_the_test_rows(raw_copy: Path, tmp_path: Path) -> None:
    oracle = pd.read_csv(raw_copy / "oracle.csv")
    oracle.iloc[::2].to_csv(raw_copy / "oracle.csv", index=False)
    _assert_fails_cleanly(raw_copy, tmp_path / "out" / "p", "oracle.csv", "covers every")


def test_missing_directory_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(RawDataError, match="not a directory"):
        ingest_kuairec(tmp_path / "nowhere", tmp_path / "p")
    with pytest.raises(DataSpecError, match="label_mode"):
        IngestConfig(label_mode="seconds").validate()  # type: ignore[arg-type]
    with pytest.raises(DataSpecError, match="user_fields"):
        IngestConfig(user_fields=("age",)).validate()
    assert not (tmp_path / "p").exists()


def test_rerun_replaces_the_output_whole(tiny_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    ingest_kuairec(tiny_raw, out, IngestConfig(label_mode="watch_ratio"))
    (out / "notes.txt").write_text("x")  # a file grmodel did not write: never removed
    with pytest.raises(OutputError, match="did not write: notes.txt"):
        ingest_kuairec(tiny_raw, out, IngestConfig())
    assert (out / "notes.txt").read_text() == "x"
    (out / "notes.txt").unlink()
    ingest_kuairec(tiny_raw, out, IngestConfig())
    assert json.loads((out / "manifest.json").read_text())["label"]["mode"] == "watch_time"
    assert [p.name for p in tmp_path.iterdir()] == ["p"]
    shutil.rmtree(out)


def test_same_input_and_options_give_identical_files(tiny_raw: Path, tiny_processed: Path,
                                                     tmp_path: Path) -> None:
    ingest_kuairec(tiny_raw, tmp_path / "again", IngestConfig())
    for name in ("train.parquet", "valid.parquet", "test.parquet", "manifest.json"):
        assert (tmp_path / "again" / name).read_bytes() == (tiny_processed / name).read_bytes()

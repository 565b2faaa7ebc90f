"""Generated KuaiRec -> validate raw -> ingest -> validate processed -> vocabulary ->
validate tokens, and what each suite catches in processed data and token sequences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grmodel.codec import EncodedLabels, LabelCodec
from grmodel.config import VocabConfig
from grmodel.features import DatasetError
from grmodel.validation import (
    ProcessedBounds,
    RawBounds,
    ValidationFailed,
    validate_processed,
    validate_raw_kuairec,
    validate_tokens,
)
from grmodel.vocab import EOS, build_vocabulary

REAL_SIDE_FILES = Path(__file__).resolve().parents[3] / "shared" / "data" / "kuairec-side"


def test_generated_data_passes_every_suite(tiny_raw: Path, tiny_processed: Path) -> None:
    raw = validate_raw_kuairec(tiny_raw)  # default bounds accept the generated data
    assert raw.success, raw.summary()
    assert raw.counts()["skipped"] == 0 and not raw.warnings
    assert {t["name"]: t["rows"] for t in raw.tables}["big_matrix.csv"] == 8000

    processed = validate_processed(tiny_processed)
    assert processed.success, processed.summary()
    assert processed.params["overlap_rule"] == "time"  # chronological split: test after train
    assert "expect_column_min_to_be_between(timestamp)" in {c.check_id for c in processed.checks}

    labels = pd.read_parquet(tiny_processed / "train.parquet")["label"].to_numpy()
    vocab = build_vocabulary(labels, VocabConfig())
    tokens = validate_tokens(labels, vocab, LabelCodec(vocab).max_decode_len(labels))
    assert tokens.success, tokens.summary()
    assert tokens.raise_for_failure() is tokens


@pytest.mark.skipif(not REAL_SIDE_FILES.is_dir(), reason="real KuaiRec side files not present")
def test_real_side_files_pass_with_default_bounds() -> None:
    report = validate_raw_kuairec(
        REAL_SIDE_FILES, files=("user_features.csv", "item_categories.csv")
    )
    assert report.success, report.summary()
    assert not report.warnings  # about 4% of users lack some onehot fields: under the bound
    assert [t["rows"] for t in report.tables] == [7176, 10728]


def test_bounds_are_parameters_recorded_in_the_result(tiny_raw: Path) -> None:
    bounds = RawBounds(big_rows=(10_000, 20_000), watch_ratio_median=(2.0, 3.0))
    report = validate_raw_kuairec(tiny_raw, bounds, files=("big_matrix.csv",))
    assert report.failed_ids() == {
        ("big_matrix.csv", "expect_table_row_count_to_be_between"),
        ("big_matrix.csv", "expect_column_median_to_be_between(watch_ratio)"),
    }
    assert report.to_dict()["params"]["big_rows"] == [10_000, 20_000]
    with pytest.raises(ValidationFailed, match="rows <= 20,000"):
        report.raise_for_failure()


def test_gate_stops_before_anything_downstream(tmp_path: Path) -> None:
    from grmodel.data.kuairec.ingest import ingest_kuairec

    raw = tmp_path / "raw"
    raw.mkdir()
    bad_inputs = Path(__file__).parent / "bad_inputs"
    for name, source in (("big_matrix", "truncated"), ("small_matrix", "good_matrix"),
                         ("user_features", "good_users"), ("item_categories", "good_items")):
        shutil.copyfile(bad_inputs / f"{source}.csv", raw / f"{name}.csv")
    processed = tmp_path / "processed"
    with pytest.raises(ValidationFailed, match="expect_csv_rows_to_have_header_field_count"):
        bounds = RawBounds(big_rows=(20, 1000), small_rows=(20, 1000), user_rows=(2, 100),
                           item_rows=(2, 100))
        validate_raw_kuairec(raw, bounds).gate(tmp_path / "validation")
        ingest_kuairec(raw, processed)
    assert not processed.exists()
    assert not json.loads((tmp_path / "validation" / "validation.json").read_text())["success"]


# ------------------------------------------------------------------------ processed dataset


def corrupt(source: Path, target: Path, split: str, change) -> Path:
    """A copy of a processed dataset with ``change(frame)`` applied to one split."""
    shutil.copytree(source, target)
    path = target / f"{split}.parquet"
    frame = pd.read_parquet(path)
    change(frame)
    frame.to_parquet(path, index=False)
    return target


def first_masked_field(processed: Path) -> tuple[str, str, int]:
    manifest = json.loads((processed / "manifest.json").read_text())
    spec = next(f for f in manifest["features"]["fields"] if f["mask_column"])
    return spec["name"], spec["mask_column"], spec["cardinality"]


def test_ids_outside_encoder_size(tiny_processed: Path, tmp_path: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame.loc[[3, 5, 8], "item_id"] = 10**6

    report = validate_processed(corrupt(tiny_processed, tmp_path / "p", "test", change))
    (failure,) = report.failures
    assert (failure.table, failure.check_id) == (
        "test.parquet", "expect_column_values_to_be_null(id_outside_encoder)")
    assert failure.unexpected_count == 3 and failure.samples == ["item_id"] * 3
    assert failure.note == "by field: item_id 3"


def test_masks_outside_0_1_and_disagreeing_with_ids(tiny_processed: Path, tmp_path: Path) -> None:
    field, mask, _ = first_masked_field(tiny_processed)

    def change(frame: pd.DataFrame) -> None:
        frame.loc[0, field] = 2
        frame.loc[0, mask] = 2  # neither 0 nor 1 (but it does say "valid", as the id does)
        frame.loc[1, field] = 0  # a missing id whose mask still says valid
        frame.loc[1, mask] = 1

    report = validate_processed(corrupt(tiny_processed, tmp_path / "p", "valid", change))
    assert report.failed_ids() == {
        ("valid.parquet", "expect_column_values_to_be_null(mask_not_0_or_1)"),
        ("valid.parquet", "expect_column_values_to_be_null(mask_disagrees_with_id)"),
    }
    counts = {c.column: c.unexpected_count for c in report.failures}
    assert counts == {"mask_not_0_or_1": 1, "mask_disagrees_with_id": 1}


def test_label_negative_or_not_finite(tiny_processed: Path, tmp_path: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame.loc[[0, 1, 2], "label"] = [-1.0, np.inf, np.nan]

    report = validate_processed(corrupt(tiny_processed, tmp_path / "p", "train", change))
    assert report.failed_ids() == {
        ("train.parquet", "expect_column_values_to_be_between(label)"),
        ("train.parquet", "expect_column_values_to_not_be_null(label)"),
    }
    between = next(c for c in report.failures if c.expectation.endswith("between"))
    assert between.unexpected_count == 2 and set(between.samples) == {-1.0, "inf"}


def test_split_sizes_and_time_overlap(tiny_processed: Path, tmp_path: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame.drop(index=frame.index[:5], inplace=True)  # rows lost after the manifest
        frame.loc[frame.index[0], "timestamp"] = 0.0  # a test row older than all of train

    report = validate_processed(corrupt(tiny_processed, tmp_path / "p", "test", change))
    assert report.failed_ids() == {
        ("test.parquet", "expect_table_row_count_to_equal"),
        ("test.parquet", "expect_column_min_to_be_between(timestamp)"),
    }


def test_pair_overlap_when_the_split_forbids_it(tiny_processed: Path, tmp_path: Path) -> None:
    train = pd.read_parquet(tiny_processed / "train.parquet")

    def change(frame: pd.DataFrame) -> None:
        frame.loc[0, ["user_id_raw", "item_id_raw"]] = train.loc[0, ["user_id_raw", "item_id_raw"]]

    target = corrupt(tiny_processed, tmp_path / "p", "test", change)
    # A time split allows the same pair in train and test; a pair rule does not.
    assert validate_processed(target).success
    report = validate_processed(target, ProcessedBounds(forbid_overlap="pairs"))
    assert ("test.parquet", "expect_column_values_to_be_in_set(pair_in_train)") in (
        report.failed_ids())
    failure = next(c for c in report.failures if c.table == "test.parquet")
    first = failure.sample_rows[0]
    assert (first["row"], first["user_id_raw"], first["item_id_raw"]) == (
        0, train.loc[0, "user_id_raw"], train.loc[0, "item_id_raw"])


def test_missing_column_wrong_dtype_and_missing_split(tiny_processed: Path, tmp_path: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame.drop(columns=["duration_s"], inplace=True)
        frame["item_id"] = frame["item_id"].astype("float64")

    target = corrupt(tiny_processed, tmp_path / "p", "train", change)
    (target / "valid.parquet").unlink()
    report = validate_processed(target)
    assert report.failed_ids() == {
        ("train.parquet", "expect_table_columns_to_match_set"),
        ("train.parquet", "expect_column_dtype_to_match_contract(item_id)"),
        ("valid.parquet", "expect_file_to_exist"),
    }
    columns = next(c for c in report.failures if c.expectation.endswith("match_set"))
    assert columns.column == "duration_s"
    skipped = {(c.table, c.check_id) for c in report.checks if c.status == "skipped"}
    assert ("train.parquet", "expect_column_values_to_be_null(id_outside_encoder)") in skipped


def test_processed_without_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="manifest.json: not found"):
        validate_processed(tmp_path)


# ---------------------------------------------------------------------------- token labels


@pytest.fixture(scope="module")
def labels_and_vocab(tiny_processed: Path):
    labels = pd.read_parquet(tiny_processed / "train.parquet")["label"].to_numpy()
    return labels, build_vocabulary(labels, VocabConfig())


def test_sequences_longer_than_max_len(labels_and_vocab) -> None:
    labels, vocab = labels_and_vocab
    longest = LabelCodec(vocab).max_decode_len(labels)
    report = validate_tokens(labels, vocab, longest - 1)
    assert report.failed_ids() == {("tokens", "expect_column_values_to_be_between(length)")}
    assert report.failures[0].samples[0] == longest


def test_tokens_outside_vocab_and_bad_decoding(labels_and_vocab) -> None:
    labels, vocab = labels_and_vocab
    codec = LabelCodec(vocab)
    encoded = codec.encode(labels)
    sequences = encoded.sequences.copy()
    sequences[5, 1] = vocab.size + 3  # not a token of this vocabulary
    row = int(np.argmax(encoded.lengths >= 1))
    sequences[row, 1] = EOS  # <eos> before the value tokens: decodes to 0
    report = validate_tokens(labels, vocab, codec.max_decode_len(labels),
                             encoded=EncodedLabels(sequences, encoded.lengths))
    assert report.failed_ids() == {
        ("tokens", "expect_column_values_to_be_between(max_token)"),
        ("tokens", "expect_column_values_to_be_between(relative_error)"),
    }


def test_invalid_labels_are_reported_not_raised(labels_and_vocab) -> None:
    labels, vocab = labels_and_vocab
    bad = labels.copy()
    bad[:3] = [np.nan, -1.0, np.inf]
    report = validate_tokens(bad, vocab, 50)
    assert report.failed_ids() == {
        ("tokens", "expect_column_values_to_not_be_null(label)"),
        ("tokens", "expect_column_values_to_be_between(label)"),
    }


def test_absurd_labels_fail_the_tail_rule(tiny_processed: Path, tmp_path: Path) -> None:
    # Three corrupt plays of 1e12 ms become 1e9 s labels in train.
    def change(frame: pd.DataFrame) -> None:
        frame.loc[[5, 6, 7], "label"] = 1e9

    report = validate_processed(corrupt(tiny_processed, tmp_path / "p", "train", change))
    assert report.failed_ids() == {
        ("train.parquet", "expect_column_values_to_be_between(label_tail_ratio)")}
    (failure,) = report.failures
    assert failure.unexpected_count == 3 and "0.999 quantile" in report.summary()


def test_constant_label_and_few_rows_warn(tiny_processed: Path, tmp_path: Path) -> None:
    def change(frame: pd.DataFrame) -> None:
        frame["label"] = 7.0

    report = validate_processed(corrupt(tiny_processed, tmp_path / "p", "valid", change),
                                ProcessedBounds(few_rows=10**6))
    assert report.success, report.summary()
    warned = {(c.table, c.check_id) for c in report.warnings}
    assert ("valid.parquet", "expect_column_unique_value_count_to_be_between(label)") in warned
    assert {("train.parquet", "expect_table_row_count_to_be_between[few_rows]"),
            ("test.parquet", "expect_table_row_count_to_be_between[few_rows]")} <= warned

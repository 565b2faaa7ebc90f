"""Strict, bounded-memory prediction: integer ids within the vocabularies, raw values through
the model's own encoders, Parquet scored in chunks with the in-memory path's results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grmodel import cli
from grmodel.checkpoint import load_checkpoint, load_encoders
from grmodel.features import DatasetError, encode_raw, read_split
from grmodel.predict import predict_frame, predict_parquet


def test_streamed_parquet_equals_the_in_memory_path(shop_model: dict, tmp_path: Path) -> None:
    model, _ = load_checkpoint(shop_model["model"])
    test = read_split(shop_model["processed"], "test")
    source = tmp_path / "in.parquet"
    test.to_parquet(source, row_group_size=50)
    # Chunks of 37 rows are rounded up to whole batches of 16 (48 rows), so each batch holds
    # the rows it holds in memory: identical results, not merely close ones.
    rows = predict_parquet(model, source, tmp_path / "out.parquet", batch_size=16, chunk_rows=37)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert rows == len(test) == len(out)
    np.testing.assert_array_equal(out["prediction"].to_numpy(),
                                  predict_frame(model, test, batch_size=16))
    pd.testing.assert_frame_equal(out.drop(columns="prediction"), test)


def test_raw_ids_go_through_the_models_encoders(shop_model: dict, tmp_path: Path) -> None:
    model, _ = load_checkpoint(shop_model["model"])
    encoders = load_encoders(shop_model["model"], model.schema)
    table = shop_model["table"]
    raw = table[table["fold"] == "test"].reset_index(drop=True)
    encoded = read_split(shop_model["processed"], "test")
    expected = predict_frame(model, encoded)
    np.testing.assert_array_equal(predict_frame(model, raw, encoders=encoders), expected)
    raw.to_parquet(tmp_path / "raw.parquet")
    out = tmp_path / "scored.parquet"
    argv = ["predict", "--model", str(shop_model["model"]), "--input",
            str(tmp_path / "raw.parquet"), "--output", str(out), "--raw-ids"]
    assert cli.main(argv) == 0
    np.testing.assert_array_equal(pd.read_parquet(out)["prediction"].to_numpy(), expected)
    # Unseen values take the OOV id, as the ingest would have encoded them.
    unseen = raw.assign(customer_id=10_000, country="zz")
    ids = model.schema.arrays(encode_raw(unseen, model.schema, encoders))[0]
    assert (ids[:, model.schema.names.index("customer_id")] == 1).all()
    assert (ids[:, model.schema.names.index("country")] == 1).all()


def test_the_model_directory_carries_verified_encoders(shop_model: dict) -> None:
    import json

    meta = json.loads((shop_model["model"] / "checkpoint.json").read_text())
    assert set(meta["sha256"]) == {"model.pt", "encoders.json"}
    encoders = json.loads((shop_model["model"] / "encoders.json").read_text())
    assert encoders["fields"]["country"] == {"kind": "str", "values": ["de", "fr", "us"]}
    assert len(encoders["fields"]["age"]["edges"]) == 4


def test_predict_refuses_a_prediction_column(shop_model: dict, tmp_path: Path) -> None:
    model, _ = load_checkpoint(shop_model["model"])
    test = read_split(shop_model["processed"], "test").assign(prediction=0.0)
    test.to_parquet(tmp_path / "in.parquet")
    with pytest.raises(DatasetError, match="already has a 'prediction' column"):
        predict_parquet(model, tmp_path / "in.parquet", tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_bad_chunk_leaves_no_output(shop_model: dict, tmp_path: Path) -> None:
    model, _ = load_checkpoint(shop_model["model"])
    test = read_split(shop_model["processed"], "test")
    test.loc[len(test) - 1, "customer_id"] = 10**6  # in the last chunk only
    test.to_parquet(tmp_path / "in.parquet")
    with pytest.raises(DatasetError, match=r"rows 100\.\.119\).*customer_id.*outside"):
        predict_parquet(model, tmp_path / "in.parquet", tmp_path / "out.parquet", batch_size=50,
                        chunk_rows=50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]
    assert pq.read_metadata(tmp_path / "in.parquet").num_rows == 120


def test_raw_integers_with_gaps_stay_integers(shop_model: dict, tmp_path: Path) -> None:
    """A Parquet integer column with a missing value (written by a tool other than pandas, so
    without pandas' metadata) reads as float64 in numpy terms, which an integer vocabulary
    refuses; scored with --raw-ids it stays integer, the gap missing (id 0)."""
    model, _ = load_checkpoint(shop_model["model"])
    encoders = load_encoders(shop_model["model"], model.schema)
    table = shop_model["table"]
    raw = table[table["fold"] == "test"].reset_index(drop=True)
    gappy = raw.assign(customer_id=raw["customer_id"].astype("Int64"))
    gappy.loc[0, "customer_id"] = pd.NA
    pq.write_table(pa.Table.from_pandas(gappy, preserve_index=False).replace_schema_metadata(None),
                   tmp_path / "raw.parquet")
    assert pq.read_schema(tmp_path / "raw.parquet").field("customer_id").type == "int64"
    predict_parquet(model, tmp_path / "raw.parquet", tmp_path / "out.parquet", encoders=encoders)
    expected = raw.assign(customer_id=raw["customer_id"].astype("Int64"))
    expected.loc[0, "customer_id"] = pd.NA
    ids = encode_raw(expected, model.schema, encoders)["customer_id"]
    assert ids.iloc[0] == 0 and (ids.iloc[1:] >= 1).all()
    np.testing.assert_array_equal(pd.read_parquet(tmp_path / "out.parquet")["prediction"],
                                  predict_frame(model, expected, encoders=encoders))

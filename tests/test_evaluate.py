"""Every model reads the test rows through its own encoders: a model of another day (whose
vocabularies were fitted on other rows) scores the raw values its encoders map to its ids, as
`grmodel predict --raw-ids` does; a model of this dataset scores its ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from grmodel import cli
from grmodel.checkpoint import load_checkpoint, load_encoders
from grmodel.evaluate import (
    DATASET_IDS,
    OWN_ENCODERS,
    evaluate_models,
    score_test,
)
from grmodel.features import RAW_PREFIX, DatasetError, encode_raw, read_split
from grmodel.predict import predict_frame


def _raw_ids_predictions(model_dir: Path, table: pd.DataFrame, tmp_path: Path) -> np.ndarray:
    """`grmodel predict --raw-ids` on the day's test rows as its source table holds them."""
    raw = table[table["fold"] == "test"].reset_index(drop=True)
    raw.to_parquet(tmp_path / "raw.parquet")
    out = tmp_path / "scored.parquet"
    assert cli.main(["predict", "--model", str(model_dir), "--input", str(tmp_path / "raw.parquet"),
                     "--output", str(out), "--raw-ids"]) == 0
    return pd.read_parquet(out)["prediction"].to_numpy()


@pytest.mark.parametrize("day", ["day2", "day2_same_size"])
def test_a_champion_scores_a_new_day_through_its_own_encoders(shop_days: dict, day: str,
                                                             tmp_path: Path) -> None:
    champion, today = shop_days["day1"], shop_days[day]
    scores = score_test(today["processed"], {"champion": champion["model"],
                                             "challenger": today["model"]})
    assert scores.scored_on == {"champion": OWN_ENCODERS, "challenger": DATASET_IDS}
    np.testing.assert_allclose(scores.predictions["champion"],
                               _raw_ids_predictions(champion["model"], today["table"], tmp_path),
                               rtol=1e-6)
    # What scoring the day's ids would have done: vocabulary values inserted in the middle
    # move every later id, so the day's ids mean other values to the champion (and where the
    # vocabulary grew, some lie beyond it).
    model, _ = load_checkpoint(champion["model"])
    test = read_split(today["processed"], "test")
    encoders = load_encoders(champion["model"], model.schema)
    own = model.schema.arrays(encode_raw(_raw(today), model.schema, encoders))[0]
    column = model.schema.names.index("first_category")
    assert (own[:, column] != test["first_category"].to_numpy()).mean() > 0.2
    if day == "day2":
        with pytest.raises(DatasetError, match="outside"):
            model.schema.arrays(test)
    else:
        model.schema.arrays(test)  # in range: without the raw values, silently misaligned


def _raw(today: dict) -> pd.DataFrame:
    table = today["table"]
    return table[table["fold"] == "test"].reset_index(drop=True)


def test_a_model_of_this_dataset_scores_its_ids(shop_days: dict) -> None:
    day = shop_days["day2"]
    scores = score_test(day["processed"], {"model": day["model"]})
    assert scores.scored_on == {"model": DATASET_IDS}
    assert not [c for c in scores.test.columns if c.startswith(RAW_PREFIX)]
    model, _ = load_checkpoint(day["model"])
    np.testing.assert_array_equal(scores.predictions["model"],
                                  predict_frame(model, read_split(day["processed"], "test")))


def test_other_encoders_without_raw_values_are_refused(shop_days: dict, tmp_path: Path) -> None:
    """A dataset written before the test split kept raw values: no silent misalignment."""
    old = tmp_path / "processed"
    shutil.copytree(shop_days["day2"]["processed"], old)
    test = pq.read_table(old / "test.parquet")
    pq.write_table(test.drop([c for c in test.column_names if c.startswith(RAW_PREFIX)]),
                   old / "test.parquet")
    with pytest.raises(DatasetError, match=r"encoders differ .* in 4 of 4 fields.*raw"):
        evaluate_models(old, {"champion": shop_days["day1"]["model"]})

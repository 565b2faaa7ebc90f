"""GR's vocabulary stage and label encoding on Spark equal the pandas stages: the same label
state (vocabulary, decode length, length statistics, Huber unit) from label counts, and the
same token sequences, row for row, from the pandas UDF over the codec. Tiny set: 7,200
training labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from grmodel.pipeline.stages.labels import (
    TOKENS_FILE,
    VOCABULARY_FILE,
    build_vocab,
    encode_labels,
    read_tokens,
)
from grmodel.pipeline.stages.record import STAGE_RECORD

pytestmark = pytest.mark.slow


def test_spark_vocabulary_and_tokens_equal_the_pandas_stages(spark, tiny_processed: Path,
                                                              tmp_path: Path) -> None:
    for engine in ("pandas", "spark"):
        build_vocab(tiny_processed, tmp_path / f"vocab-{engine}", engine=engine)
        encode_labels(tiny_processed, tmp_path / f"vocab-{engine}", tmp_path / f"tokens-{engine}",
                      engine=engine)
    want, got = (json.loads((tmp_path / f"vocab-{e}" / VOCABULARY_FILE).read_text())
                 for e in ("pandas", "spark"))
    assert got == want
    assert len(want["label_state"]["vocab"]["values"]) > 10  # a real dynamic-quantile vocabulary
    expected = pq.read_table(tmp_path / "tokens-pandas" / TOKENS_FILE)
    table = pq.read_table(tmp_path / "tokens-spark" / TOKENS_FILE)
    assert table.schema == expected.schema
    assert table.equals(expected)
    labels = pd.read_parquet(tiny_processed / "train.parquet").label.to_numpy()
    np.testing.assert_array_equal(read_tokens(tmp_path / "tokens-spark", labels),
                                  read_tokens(tmp_path / "tokens-pandas", labels))
    record = json.loads((tmp_path / "tokens-spark" / STAGE_RECORD).read_text())
    assert record["params"]["engine"] == "spark" and record["metrics"]["checks_failed"] == 0

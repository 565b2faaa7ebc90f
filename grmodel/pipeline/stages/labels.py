"""GR's label stages: its vocabulary (the label state) from the train labels, then every train
label's token sequence, gated by the token suite."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from grmodel.atomic import through_json, write_json_atomic
from grmodel.codec import LabelCodec
from grmodel.features import read_labels
from grmodel.models.gr import GRModel, label_state_from_counts
from grmodel.pipeline.live import StageTracking
from grmodel.pipeline.stages.plan import gr_config
from grmodel.pipeline.stages.record import StageError, check_engine
from grmodel.pipeline.stages.runner import StageRun
from grmodel.training.records import dataset_fingerprint
from grmodel.validation import validate_tokens
from grmodel.vocab import Vocabulary

VOCABULARY_FILE = "vocabulary.json"  # build_vocab's record: the label state and what it was built from
TOKENS_FILE = "tokens.parquet"


def build_vocab(processed: str | Path, out_dir: str | Path, overrides: list[str] | None = None,
                tracking: StageTracking | None = None, engine: str = "pandas") -> dict[str, Any]:
    """GR's vocabulary (its label state: token values, decode length) from the train labels;
    engine spark counts the labels by value in Spark and fits the same state from the counts."""
    stage = StageRun("build_vocab", tracking)
    check_engine(engine)
    data = Path(processed)
    config = gr_config(data, overrides)
    with stage.output(out_dir) as out:
        if engine == "spark":
            # lazy: pyspark is the optional extra `spark`
            from grmodel.data.spark.session import spark_session
            from grmodel.data.spark.tokens import train_label_counts

            values, counts = train_label_counts(spark_session(), data, config.data.label_column,
                                                config.data.max_train_rows)
            state, train_rows = label_state_from_counts(values, counts, config), int(counts.sum())
        else:
            labels = read_labels(data, "train", config.data.label_column, config.data.max_train_rows)
            state, train_rows = GRModel.fit_label_state(labels, config), int(labels.size)
        record = {"label_state": state, "vocab_config": dataclasses.asdict(config.vocab),
                  "max_decode_len_config": config.model.max_decode_len,
                  "dataset_fingerprint": dataset_fingerprint(data), "train_rows": train_rows}
        write_json_atomic(out / VOCABULARY_FILE, record)
        stage.record(params={"vocab": record["vocab_config"]},
                     metrics={"vocab_size": float(len(state["vocab"]["values"])),
                              "max_decode_len": float(state["max_decode_len"])},
                     artifacts=[VOCABULARY_FILE])
    return {"vocab_size": len(state["vocab"]["values"]), "max_decode_len": state["max_decode_len"]}


def read_vocabulary(vocab_dir: str | Path, config: Any, data: Path) -> dict[str, Any]:
    """The label state in ``vocab_dir``, checked against the config and data it will serve."""
    path = Path(vocab_dir) / VOCABULARY_FILE
    if not path.is_file():
        raise StageError(f"{path}: not found (rule: build_vocab writes {VOCABULARY_FILE})")
    record = json.loads(path.read_text())
    if record["vocab_config"] != through_json(dataclasses.asdict(config.vocab)):
        raise StageError(f"{path}: built with vocab config {record['vocab_config']}, but this stage"
                         f" runs with {dataclasses.asdict(config.vocab)} (rule: one GR config per run)")
    if record["dataset_fingerprint"] != dataset_fingerprint(data):
        raise StageError(f"{path}: built on another dataset than {data}")
    return record["label_state"]


def encode_labels(processed: str | Path, vocab_dir: str | Path, out_dir: str | Path,
                  overrides: list[str] | None = None, tracking: StageTracking | None = None,
                  engine: str = "pandas") -> dict[str, Any]:
    """Greedy-encode every training label into its token sequence, gate the sequences with
    the token suite (every label encodes within the decode length and decodes back), and
    write them for training: ``tokens.parquet`` with one fixed-length list per train row.
    Engine spark encodes in a pandas UDF over the same codec and gates every distinct label
    (a sequence depends on the scaled label alone, so that covers every row)."""
    check_engine(engine)
    stage = StageRun("encode_labels", tracking)
    data = Path(processed)
    config = gr_config(data, overrides)
    state = read_vocabulary(vocab_dir, config, data)
    vocab = Vocabulary.from_dict(state["vocab"])
    max_len = int(state["max_decode_len"])
    encode = _encode_with_spark if engine == "spark" else _encode_with_pandas
    with stage.output(out_dir) as out:
        written, checks = encode(data, config, vocab, max_len, out)
        stage.record(
            params={"tokens": {"max_decode_len": max_len, "rows": written["rows"]},
                    **({"engine": "spark"} if engine == "spark" else {})},
            metrics={"mean_length": written["mean_length"], "max_length": written["max_length"],
                     **{f"checks_{k}": float(v) for k, v in checks.items()}},
            artifacts=["validation"])
    return {"rows": written["rows"], "mean_length": written["mean_length"]}


def _encode_with_pandas(data: Path, config: Any, vocab: Vocabulary, max_len: int, out: Path
                        ) -> tuple[dict[str, Any], dict[str, int]]:
    """Encode every train label in this process, gate the sequences, write ``tokens.parquet``;
    (rows, mean and max length) and the gate's counts."""
    labels = read_labels(data, "train", config.data.label_column, config.data.max_train_rows)
    encoded = LabelCodec(vocab).encode(labels, max_len=max_len)
    checks = _gate(validate_tokens(labels, vocab, max_len, encoded=encoded,
                                   source=str(data / "train.parquet")), out)
    width = encoded.sequences.shape[1]
    flat = pa.array(encoded.sequences.astype(np.int32).ravel())
    table = pa.table({
        "label": pa.array(labels),
        "length": pa.array(encoded.lengths.astype(np.int32)),
        "tokens": pa.FixedSizeListArray.from_arrays(flat, width),
    })
    pq.write_table(table, out / TOKENS_FILE)
    lengths = encoded.lengths
    written = {"rows": int(labels.size), "mean_length": float(lengths.mean()),
               "max_length": float(lengths.max())}
    return written, checks


def _encode_with_spark(data: Path, config: Any, vocab: Vocabulary, max_len: int, out: Path
                       ) -> tuple[dict[str, Any], dict[str, int]]:
    """The same in Spark: the gate runs on every distinct label, the encoding in a UDF."""
    # lazy: pyspark is the optional extra `spark`
    from grmodel.data.spark.session import spark_session
    from grmodel.data.spark.tokens import train_label_counts, write_tokens

    spark = spark_session()
    column, max_rows = config.data.label_column, config.data.max_train_rows
    values, _ = train_label_counts(spark, data, column, max_rows)
    checks = _gate(validate_tokens(values, vocab, max_len, source=str(data / "train.parquet")), out)
    written = write_tokens(spark, data, vocab, max_len, out / TOKENS_FILE, column, max_rows)
    return {**written, "max_length": float(written["max_length"])}, checks


def _gate(report: Any, out: Path) -> dict[str, int]:
    """Keep the token suite's report in the output; nothing more is written when it failed."""
    report.write(out / "validation")
    report.raise_for_failure()
    return report.counts()


def read_tokens(tokens_dir: str | Path, labels: np.ndarray) -> np.ndarray:
    """The token sequences of :func:`encode_labels`, checked row by row against ``labels``."""
    path = Path(tokens_dir) / TOKENS_FILE
    if not path.is_file():
        raise StageError(f"{path}: not found (rule: encode_labels writes {TOKENS_FILE})")
    table = pq.read_table(path)
    column = table.column("tokens").combine_chunks()
    sequences = np.asarray(column.values).reshape(len(table), column.type.list_size).astype(np.int64)
    if len(table) != labels.size or not np.array_equal(table.column("label").to_numpy(), labels):
        raise StageError(f"{path}: its {len(table)} labels are not the {labels.size} training labels"
                         " of this dataset (rule: tokens are encoded from the same train split)")
    return sequences

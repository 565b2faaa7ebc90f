"""The bad-input corpus (inputs side): predict inputs, checkpoints, raw files and
dataset specs, each through the command line. Every case names the rule that stops it, and
must end in exit status 1 with one line on stderr naming it -- never a traceback.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from grmodel import cli
from grmodel.features import read_split

BAD_RAW = Path(__file__).parent / "validation" / "bad_inputs"
SMALL_BOUNDS = ["--set", "big_rows=[20,1000]", "--set", "small_rows=[20,1000]",
                "--set", "user_rows=[2,100]", "--set", "item_rows=[2,100]"]
GOOD_RAW = {"big_matrix": "good_matrix", "small_matrix": "good_matrix",
            "user_features": "good_users", "item_categories": "good_items"}


@dataclass(frozen=True)
class Case:
    rule: str  # a fragment of the one line the command must print
    make: Callable[[dict, Path], list[str]]  # (fixture paths, tmp dir) -> grmodel argv


# ------------------------------------------------------------------------ predict inputs


def scored(change: Callable[[pd.DataFrame], pd.DataFrame | None], raw: bool = False,
           model: str = "model") -> Callable[[dict, Path], list[str]]:
    """``grmodel predict`` on the test split (or the raw test rows) after ``change``."""

    def make(shop: dict, tmp: Path) -> list[str]:
        if raw:
            frame = shop["table"][shop["table"]["fold"] == "test"].reset_index(drop=True)
        else:
            frame = read_split(shop["processed"], "test")
        frame = change(frame.copy())
        if isinstance(frame, pa.Table):
            pq.write_table(frame, tmp / "in.parquet")
        else:
            frame.to_parquet(tmp / "in.parquet")
        argv = ["predict", "--model", str(shop[model]), "--input", str(tmp / "in.parquet"),
                "--output", str(tmp / "out.parquet")]
        return [*argv, "--raw-ids"] if raw else argv

    return make


def cells(column: str, values: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = values if not callable(values) else values(frame[column])
        return frame

    return change


def duplicate_feature(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.append_column("customer_id", table.column("customer_id"))


def input_file(text: bytes) -> Callable[[dict, Path], list[str]]:
    def make(shop: dict, tmp: Path) -> list[str]:
        (tmp / "in.parquet").write_bytes(text)
        return ["predict", "--model", str(shop["model"]), "--input", str(tmp / "in.parquet"),
                "--output", str(tmp / "out.parquet")]

    return make


# ----------------------------------------------------------------------------- checkpoints


def broken_model(change: Callable[[Path], None], raw: bool = False
                 ) -> Callable[[dict, Path], list[str]]:
    """``grmodel predict`` with a copy of the model directory after ``change(model_dir)``."""

    def make(shop: dict, tmp: Path) -> list[str]:
        model = tmp / "model"
        shutil.copytree(shop["model"], model)
        change(model)
        read_split(shop["processed"], "test").to_parquet(tmp / "in.parquet")
        argv = ["predict", "--model", str(model), "--input", str(tmp / "in.parquet"),
                "--output", str(tmp / "out.parquet")]
        return [*argv, "--raw-ids"] if raw else argv

    return make


def flip(name: str, at: float) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        data = bytearray((model / name).read_bytes())
        start = min(int(len(data) * at), max(len(data) - 4096, 0))
        data[start: start + 4096] = bytes(b ^ 0xFF for b in data[start: start + 4096])
        (model / name).write_bytes(bytes(data))

    return change


def edit_meta(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        meta = json.loads((model / "checkpoint.json").read_text())
        edit(meta)
        (model / "checkpoint.json").write_text(json.dumps(meta))

    return change


def replace_weights_keeping_digest(model: Path) -> None:
    """A foreign file swapped in, with its digest updated too: the digest passes, the
    loader still refuses it."""
    (model / "model.pt").write_bytes(b"not a torch file" * 100)
    edit_meta(lambda m: m["sha256"].update(model_pt_digest(model)))(model)


def model_pt_digest(model: Path) -> dict[str, str]:
    from grmodel.data.io import sha256_file

    return {"model.pt": sha256_file(model / "model.pt")}


# ------------------------------------------------------------------- raw files and specs


def good_raw(raw: Path) -> Path:
    raw.mkdir()
    for name, source in GOOD_RAW.items():
        shutil.copyfile(BAD_RAW / f"{source}.csv", raw / f"{name}.csv")
    return raw


def validate_raw(corpus_file: str) -> Callable[[dict, Path], list[str]]:
    def make(shop: dict, tmp: Path) -> list[str]:
        raw = good_raw(tmp / "raw")
        shutil.copyfile(BAD_RAW / corpus_file, raw / "big_matrix.csv")
        return ["validate", "raw", "--input", str(raw), "--out", str(tmp / "report"),
                *SMALL_BOUNDS]

    return make


def ingest_with(big_matrix: Callable[[str], str]) -> Callable[[dict, Path], list[str]]:
    """``grmodel data ingest`` on the corpus's good files, big_matrix.csv edited."""

    def make(shop: dict, tmp: Path) -> list[str]:
        raw = good_raw(tmp / "raw")
        text = (BAD_RAW / "good_matrix.csv").read_text()
        (raw / "big_matrix.csv").write_text(big_matrix(text))
        return ["data", "ingest", str(raw), str(tmp / "processed")]

    return make


def tabular(change: Callable[[pd.DataFrame], pd.DataFrame], spec: dict | None = None,
            suffix: str = ".csv") -> Callable[[dict, Path], list[str]]:
    """``grmodel data tabular`` on the shop table after ``change``."""

    def make(shop: dict, tmp: Path) -> list[str]:
        frame = change(shop["table"].copy())
        source = tmp / f"shop{suffix}"
        if suffix == ".csv":
            frame.to_csv(source, index=False)
        else:
            frame.to_parquet(source)
        full = {"name": "shop", "source": source.name, "label": "ltv",
                "user": {"categorical": ["customer_id", "country"]},
                "item": {"categorical": ["first_category"]}, **(spec or {})}
        (tmp / "spec.yaml").write_text(yaml.safe_dump(full))
        return ["data", "tabular", str(tmp / "spec.yaml"), str(tmp / "out")]

    return make


def rename_header(old: str, new: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.rename(columns={old: new})


CASES = {
    # Predict inputs (encoded ids).
    "float_ids_truncated_before": Case("rule: feature ids are integers",
                                       scored(cells("customer_id", lambda c: c + 0.7))),
    "whole_number_float_ids": Case("'customer_id' has dtype float64 (rule: feature ids are integers",
                                   scored(cells("customer_id", lambda c: c.astype(float)))),
    "string_ids": Case("column 'country' has dtype object (rule: feature ids are integers",
                       scored(cells("country", lambda c: c.astype(str)))),
    "bool_ids": Case("has dtype bool (rule: feature ids are integers",
                     scored(cells("age", lambda c: c > 3))),
    "id_above_vocabulary": Case("rule: ids within the model's vocabulary",
                                scored(cells("customer_id", lambda c: c + 10_000))),
    "negative_id": Case("such as -1 (rule: ids within the model's vocabulary",
                        scored(cells("first_category", -1))),
    "uint64_beyond_int64": Case("rule: ids within the model's vocabulary",
                                scored(cells("customer_id", lambda c: c.astype(np.uint64)
                                             + np.uint64(2**63)))),
    "null_ids": Case("has null ids (rule: not null)",
                     scored(cells("customer_id", lambda c: c.astype("Int64").where(c > 3)))),
    "missing_feature_column": Case("missing feature columns ['age']",
                                   scored(lambda f: f.drop(columns="age"))),
    "duplicate_feature_column": Case(
        "columns ['customer_id'] appear more than once (rule: unique column names)",
        scored(duplicate_feature)),
    "prediction_column_present": Case("already has a 'prediction' column",
                                      scored(lambda f: f.assign(prediction=1.0))),
    "input_not_parquet": Case("not a readable Parquet file", input_file(b"a,b\n1,2\n")),
    "input_empty_file": Case("not a readable Parquet file", input_file(b"")),
    "input_missing": Case("not found (rule: the input is a Parquet file)",
                          lambda shop, tmp: ["predict", "--model", str(shop["model"]),
                                             "--input", str(tmp / "nope.parquet"),
                                             "--output", str(tmp / "out.parquet")]),
    # Predict inputs (raw values through the model's encoders).
    "raw_ids_int_for_a_string_field": Case("rule: raw values of 'country' are str",
                                           scored(cells("country", 3), raw=True)),
    "raw_ids_string_for_an_int_field": Case("rule: raw values of 'customer_id' are int",
                                            scored(cells("customer_id", lambda c: c.astype(str)),
                                                   raw=True)),
    "raw_ids_float_for_an_int_field": Case("rule: raw values of 'customer_id' are int",
                                           scored(cells("customer_id", lambda c: c + 0.5),
                                                  raw=True)),
    "raw_ids_text_for_a_bucketed_field": Case("rule: raw values of a bucketed field are numbers",
                                              scored(cells("age", "old"), raw=True)),
    "raw_ids_model_without_encoders": Case("rule: raw ids need the encoders",
                                           broken_model(lambda m: (
                                               (m / "encoders.json").unlink(),
                                               edit_meta(lambda x: x["sha256"].pop(
                                                   "encoders.json"))(m)), raw=True)),
    # Checkpoints.
    "weights_4kb_flipped": Case("model.pt: sha256 differs from the one checkpoint.json records"
                                " (rule: checkpoint integrity", broken_model(flip("model.pt", 0.5))),
    "weights_header_flipped": Case("model.pt: sha256 differs", broken_model(flip("model.pt", 0))),
    "weights_truncated": Case("model.pt: sha256 differs", broken_model(
        lambda m: (m / "model.pt").write_bytes((m / "model.pt").read_bytes()[:-100]))),
    "weights_missing": Case("model.pt: not found (rule: a model directory holds model.pt)",
                            broken_model(lambda m: (m / "model.pt").unlink())),
    "encoders_altered": Case("encoders.json: sha256 differs", broken_model(
        lambda m: (m / "encoders.json").write_text('{"format": "x"}'))),
    "encoders_missing": Case("encoders.json: not found (rule: every file checkpoint.json lists)",
                             broken_model(lambda m: (m / "encoders.json").unlink())),
    "digests_removed": Case("no sha256 of model.pt (rule: a grmodel.checkpoint/2 checkpoint",
                            broken_model(edit_meta(lambda m: m.pop("sha256")))),
    "metadata_not_json": Case("checkpoint.json: not readable JSON", broken_model(
        lambda m: (m / "checkpoint.json").write_text("{not json"))),
    "foreign_weights_with_matching_digest": Case("not a readable grmodel checkpoint",
                                                 broken_model(replace_weights_keeping_digest)),
    "model_dir_missing": Case("model.pt: not found", broken_model(lambda m: shutil.rmtree(m))),
    # Raw KuaiRec files.
    "raw_absurd_play_duration": Case("play_duration: 0 <= play_duration <= 86,400,000 ms",
                                     validate_raw("absurd_play_duration.csv")),
    "raw_video_too_long": Case("video_duration: 0 < video_duration <= 600,000 ms",
                               validate_raw("video_too_long.csv")),
    "raw_watch_ratio_above_cap": Case("watch_ratio: 0 <= watch_ratio <= 2000",
                                      validate_raw("watch_ratio_above_cap.csv")),
    "ingest_duplicate_header": Case(
        "['watch_ratio'] appear more than once in the header (rule: unique column",
        ingest_with(lambda t: t.replace("timestamp,watch_ratio", "watch_ratio,watch_ratio"))),
    # Generic tables and their specs.
    "tabular_duplicate_label_header": Case("['ltv'] appear more than once in the header (rule: unique column",
                                           tabular(rename_header("age", "ltv"))),
    "tabular_duplicate_feature_header": Case("['country'] appear more than once",
                                             tabular(rename_header("age", "country"),
                                                     suffix=".csv")),
    "tabular_negative_label": Case("rule: label non-negative, finite",
                                   tabular(lambda f: f.assign(ltv=-f["ltv"]), suffix=".parquet")),
}


def test_the_corpus_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_naming_its_rule(name: str, shop_model: dict, tmp_path: Path,
                                                  capsys) -> None:
    case = CASES[name]
    argv = case.make(shop_model, tmp_path)
    capsys.readouterr()
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "WARNING" not in line]
    assert len(lines) == 1, err
    assert case.rule in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out.parquet").exists()  # nothing half-written

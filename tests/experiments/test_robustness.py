"""The robustness suite end to end at the tiny preset (2 datasets, 2 models, 1 epoch), its
dataset selection, its collapse flag and its resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_runs import TINY_RUN

from grmodel.cli import main
from grmodel.config import ConfigError
from grmodel.evaluate import ORACLE, TRAIN_MEDIAN
from grmodel.experiments.robustness import DATASETS, dataset_entry, select_datasets

TINY = [*TINY_RUN, "train.batch_size=256", "train.epochs=1", "train.max_steps=5"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("robustness") / "suite"
    assert main(["experiment", "robustness", "--out", str(out), "--preset", "tiny",
                    "--datasets", "customer_value,c", "--rows", "gr,d2q", "--figure-rows", "500",
                    *TINY]) == 0
    return out


def test_one_table_per_dataset_and_model(suite: Path):
    record = json.loads((suite / "robustness.json").read_text())
    assert list(record["datasets"]) == ["customer_value", "rewatch"]
    value, rewatch = record["datasets"]["customer_value"], record["datasets"]["rewatch"]
    # D2Q runs only where the data has durations (the KuaiRec-format rewatch data).
    assert list(value["lines"]) == ["gr", TRAIN_MEDIAN, ORACLE]
    assert value["skipped_rows"] == {"d2q": "no item duration field in this dataset"}
    assert list(rewatch["lines"]) == ["gr", "d2q", TRAIN_MEDIAN, ORACLE]
    for d in record["datasets"].values():
        assert d["labels_tie"] is True and d["test_rows"] > 0
        lines = d["lines"]
        oracle_mae = lines[ORACLE]["mae"]["mean"]
        assert lines[ORACLE]["mae_to_oracle"] == 1.0 and lines[ORACLE]["collapsed"] is None
        assert lines[TRAIN_MEDIAN]["collapsed"] is None  # constant by design, not collapsed
        assert lines["gr"]["mae_to_oracle"] == pytest.approx(lines["gr"]["mae"]["mean"] / oracle_mae)
        # The oracle is the floor: the train median does worse.
        assert lines[TRAIN_MEDIAN]["mae"]["mean"] > oracle_mae
    markdown = (suite / "robustness.md").read_text()
    assert "| dataset | row | MAE ↓ | XAUC tie-aware ↑ | MAE ÷ oracle | flag |" in markdown
    assert "| (b) customer_value | oracle (median) |" in markdown
    assert "| (c) rewatch | d2q |" in markdown
    # Each dataset is a table1 experiment whose report leads with the tie-aware XAUC.
    report = (suite / "rewatch" / "report.md").read_text()
    assert "**XAUC tie-aware (headline)** ↑" in report and "XAUC reference ↑" in report


def test_finished_runs_are_reused(suite: Path):
    assert main(["experiment", "robustness", "--out", str(suite), "--preset", "tiny",
                    "--datasets", "b", "--rows", "gr", "--figure-rows", "500", *TINY]) == 0
    report = json.loads((suite / "customer_value" / "report.json").read_text())
    assert [r["resumed"] for r in report["runs"]] == [True]
    # The table is rewritten for what this invocation ran.
    assert list(json.loads((suite / "robustness.json").read_text())["datasets"]) == [
        "customer_value"]


def test_other_data_settings_in_the_same_directory_are_refused(suite: Path, capsys):
    assert main(["experiment", "robustness", "--out", str(suite), "--preset", "default",
                 "--datasets", "b", "--rows", "gr", *TINY]) == 1
    assert "made with other settings" in capsys.readouterr().err


def test_bad_requests_fail_before_any_data_is_made(tmp_path: Path, capsys):
    for extra, status in ((["--rows", "gr,nope"], 1), (["--seeds", "0"], 2),  # 2: an argument
                          (["train.nope=1"], 1), (["--datasets", "z"], 1)):
        assert main(["experiment", "robustness", "--out", str(tmp_path / "s"), "--preset", "tiny",
                     *extra]) == status
        assert "error" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_datasets_by_name_or_letter():
    assert [d.name for d in select_datasets(None)] == list(DATASETS)
    assert [d.name for d in select_datasets(["e", "kuairec_default"])] == [
        "completion", "kuairec_default"]
    assert len({d.letter for d in DATASETS.values()}) == len(DATASETS) == 6
    with pytest.raises(ConfigError, match="unknown dataset"):
        select_datasets(["g"])
    with pytest.raises(ConfigError, match="twice"):
        select_datasets(["b", "customer_value"])


def _result(mean: float, std: float, mode_share: float, label_std: float = 1.0) -> dict:
    return {"mae": 1.0, "xauc": 0.5, "xauc_tie_aware": 0.5,
            "distribution": {"pred": {"mean": mean, "std": std, "mode_share": mode_share},
                             "true": {"std": label_std}}}


def test_a_near_constant_model_is_flagged_collapsed():
    summary = {name: {"model_name": name, "mae": {"mean": 2.0, "std": None},
                      "xauc": {"mean": 0.5}, "xauc_tie_aware": {"mean": 0.5}}
               for name in ("gr", "tpm", TRAIN_MEDIAN, ORACLE)}
    report = {
        "summary": summary,
        "runs": [{"row": "gr", "seed": 1, "test": _result(0.99, 0.002, 0.01)},
                 {"row": "tpm", "seed": 1, "test": _result(3.0, 2.0, 0.7)}],
        "reference_results": {TRAIN_MEDIAN: _result(1.0, 0.0, 1.0), ORACLE: _result(2, 1.5, 0.6)},
        "dataset": {"label": {}, "test_rows": 10}, "labels_tie": True,
        "eval_config": {"xauc": "reference"},
    }
    lines = dataset_entry(DATASETS["customer_value"], report, {})["lines"]
    assert lines["gr"]["collapsed"].startswith("1/1 seeds: near-constant predictions: std 0.002")
    assert lines["tpm"]["collapsed"] is None
    assert lines[TRAIN_MEDIAN]["collapsed"] is None and lines[ORACLE]["collapsed"] is None
    # The trainer's verdict (on the validation split) is the flag when the run records one.
    report["runs"][1]["collapse"] = {"collapsed": True, "reason": "no better than the train median"}
    lines = dataset_entry(DATASETS["customer_value"], report, {})["lines"]
    assert lines["tpm"]["collapsed"] == "1/1 seeds: no better than the train median"


def test_a_row_collapsed_at_every_tuned_setting_is_left_out_of_must_beat():
    summary = {name: {"model_name": name if name in ("gr", "tpm", "gbdt") else None,
                      "mae": {"mean": mae}, "xauc_tie_aware": {"mean": x}, "xauc": {"mean": x}}
               for name, mae, x in (("gr", 1.0, 0.7), ("tpm", 3.0, 0.6), ("gbdt", 0.9, 0.65),
                                    (TRAIN_MEDIAN, 1.2, 0.5), (ORACLE, 0.8, 0.75))}
    trial = {"overrides": ["train.lr=1e-3"], "valid": {"mae": 1, "xauc": 0.5}}
    tuning = {"chosen": ["train.lr=1e-3"], "metric": "mae",
              "budget": {"epochs": 1, "max_train_rows": 50000},
              "trials": [{**trial, "collapsed": True}] * 4}
    healthy = {**tuning, "trials": [{**trial, "collapsed": False}, {**trial, "collapsed": True}]}
    result = _result(1.0, 1.0, 1.0)
    report = {
        "summary": summary,
        "runs": [{"row": "gr", "seed": 1, "test": result, "tuning": healthy},
                 {"row": "tpm", "seed": 1, "test": result, "tuning": tuning},
                 {"row": "gbdt", "seed": 1, "test": result, "tuning": healthy}],
        "reference_results": {TRAIN_MEDIAN: result, ORACLE: result},
        "dataset": {"label": {}, "test_rows": 10}, "labels_tie": True,
        "eval_config": {"xauc": "reference"},
    }
    lines = dataset_entry(DATASETS["customer_value"], report, {})["lines"]
    assert lines["tpm"]["left_out"].startswith("collapsed at every tuned setting (4/4 trials")
    assert lines["gbdt"]["left_out"] is None  # a bar: one trial trained
    assert lines["gbdt"]["reference_leads"] == {"mae": False, "xauc_tie_aware": True}
    assert lines["tpm"]["reference_leads"] == {"mae": True, "xauc_tie_aware": True}
    assert "left_out" not in lines["gr"] and "left_out" not in lines[TRAIN_MEDIAN]

"""Every model gets the same tuning budget, judged on the validation split, and it is recorded."""

from __future__ import annotations

import json

import pytest

from grmodel.experiments.runner import run_experiment
from grmodel.outputs import OutputError
from grmodel.training.tuning import TUNING_GRIDS, TuningBudget

TINY = ["model.emb_dim=16", "model.encoder_hidden=32", "model.d_model=16", "model.n_heads=2",
        "model.ffn_dim=32", "model.n_layers=1", "train.batch_size=256", "train.progress=false",
        "train.num_threads=1", "train.epochs=1", "head.cread_M=8"]


def test_every_model_has_the_same_number_of_candidates():
    sizes = {model: len(grid) for model, grid in TUNING_GRIDS.items()}
    assert set(sizes) >= {"gr", "cread", "tpm", "d2q"}
    assert len(set(sizes.values())) == 1, sizes


def test_table1_tunes_each_row_once_and_records_the_trials(planted_dataset, tmp_path):
    budget = TuningBudget(epochs=1, max_train_rows=400)
    report = run_experiment("table1", tmp_path / "exp", planted_dataset, rows=["gr", "tpm"],
                            overrides=TINY, tune=budget, figure_rows=200)
    for run in report["runs"]:
        tuning = run["tuning"]
        assert len(tuning["trials"]) == len(TUNING_GRIDS[run["row"]])
        assert tuning["chosen"] in [t["overrides"] for t in tuning["trials"]]
        assert tuning["budget"] == {"epochs": 1, "max_train_rows": 400}
        # The chosen setting is the one the run trained with.
        key, _, value = tuning["chosen"][0].partition("=")
        section, name = key.split(".")
        assert str(run["config"][section][name]) == str(float(value))
    assert "## Tuning" in (tmp_path / "exp" / "report.md").read_text()
    # A second run reuses the recorded tuning (same config, data and budget).
    record = tmp_path / "exp" / "runs" / "gr" / "tuning" / "tuning.json"
    before = json.loads(record.read_text())
    run_experiment("table1", tmp_path / "exp", planted_dataset, rows=["gr", "tpm"],
                   overrides=TINY, tune=budget, figure_rows=200)
    assert json.loads(record.read_text()) == before


def test_a_folder_grmodel_did_not_write_is_never_removed(planted_dataset, tmp_path):
    from grmodel.config import RunConfig
    from grmodel.training.tuning import tune

    work = tmp_path / "tuning"
    (work / "trial0").mkdir(parents=True)
    (work / "trial0" / "notes.txt").write_text("mine")
    config = RunConfig().with_overrides([*TINY, "model_name=gr", f"data.processed_dir={planted_dataset}"])
    with pytest.raises(OutputError, match="grmodel"):  # the output policy refuses to train into it
        tune(config, work, TuningBudget(epochs=1, max_train_rows=400))
    assert (work / "trial0" / "notes.txt").read_text() == "mine"

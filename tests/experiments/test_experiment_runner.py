"""Real end-to-end experiments with tiny models: training, evaluation, reports, figures, resume."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from tiny_runs import TINY_RUN

from grmodel.checkpoint import load_checkpoint
from grmodel.cli.experiment import register
from grmodel.comparison.figures import CURVES_FILE, FIG4_FILE, FIG5_FILE, FIG5A_FILE
from grmodel.config import CLEM_ABLATIONS, ConfigError, EvalConfig, RunConfig
from grmodel.evaluate import ORACLE, TRAIN_MEDIAN, evaluate_models
from grmodel.experiments.runner import run_experiment
from grmodel.experiments.specs import TABLE1_MODELS
from grmodel.features import label_array, read_split
from grmodel.training.records import TRAINING_RECORD, finished_run

# Tiny models and a handful of optimiser steps: these tests check the plumbing, not accuracy.
TINY = [*TINY_RUN, "model.dropout=0.0", "train.batch_size=256", "train.lr=3e-3", "train.epochs=1",
        "train.max_steps=3"]
FIGURES = {FIG5A_FILE, FIG5_FILE, FIG4_FILE, CURVES_FILE}


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="grmodel")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.fixture(scope="module")
def table1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """table1 on the generated tiny preset (which has an oracle), every model, through the CLI."""
    out = tmp_path_factory.mktemp("table1") / "exp"
    assert run_cli(["experiment", "table1", "--generate", "tiny", "--out", str(out),
                    *TINY, "tpm:head.tpm_w_var=0.5"]) == 0
    return out


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_table1_writes_reports_and_figures(table1: Path):
    report = read_report(table1)
    assert set(report["figures"]) == FIGURES
    for name in FIGURES:
        assert (table1 / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (table1 / "report.md").read_text()
    assert "## Results (ours, test split)" in markdown
    assert "The paper's numbers" in markdown and "| GR | 3.196 / 0.614 |" in markdown
    assert list(report["rows"]) == list(TABLE1_MODELS)
    assert list(report["summary"]) == [*TABLE1_MODELS, TRAIN_MEDIAN, ORACLE]
    assert report["seeds"] == [2024]
    assert [(r["row"], r["seed"], r["resumed"]) for r in report["runs"]] == [
        (m, 2024, False) for m in TABLE1_MODELS]
    assert report["dataset"]["generated"] == {"preset": "tiny", "seed": 2024}
    assert len(report["dataset"]["fingerprint"]) == 64
    assert set(report["comparisons"]) == set(TABLE1_MODELS) - {"gr"}
    for r in report["runs"]:
        assert r["wall_seconds"] > 0 and r["samples_per_second"] > 0 and r["history"]
    # Per-model options reach only their model, and are recorded.
    assert report["rows"]["tpm"]["config"]["head"] == {"tpm_w_var": 0.5}
    assert report["rows"]["gr"]["config"]["head"] == {}
    assert report["rows"]["tpm"]["config_changes"]["head.tpm_w_var"] == 0.5


def test_table1_numbers_are_evaluate_models_numbers(table1: Path):
    report = read_report(table1)
    data = Path(report["dataset"]["path"])
    dirs = {r["row"]: table1 / r["model_dir"] for r in report["runs"]}
    expected = evaluate_models(data, {k: dirs[k] for k in ("gr", "cread")}, EvalConfig())
    for name in ("gr", "cread", ORACLE, TRAIN_MEDIAN):
        summary = report["summary"][name]
        assert summary["mae"]["mean"] == pytest.approx(expected[name]["mae"])
        assert summary["xauc"]["mean"] == pytest.approx(expected[name]["xauc"])
    assert report["summary"][ORACLE]["seeds"] is None
    assert report["summary"]["gr"]["mae"]["std"] is None  # one seed: no std
    assert report["summary"]["gr"]["intervals"][0]["mae_mean"] == pytest.approx(
        expected["gr"]["intervals"][0]["mae"])


def test_table1_token_frequency_counts_the_training_encodings(table1: Path):
    report = read_report(table1)
    freq = report["figure_data"]["token_frequency"]
    assert list(freq) == ["gr"]  # only GR has a vocabulary
    model, _ = load_checkpoint(table1 / "runs" / "gr" / "seed2024")
    labels = label_array(read_split(report["dataset"]["path"], "train"))
    _, lengths = model.codec.token_sequences(labels)
    assert sum(freq["gr"]["train"]) == lengths.sum()
    assert len(freq["gr"]["train"]) == len(freq["gr"]["values"]) == len(model.vocab.values)
    assert freq["gr"]["generated_rows"] == report["dataset"]["test_rows"]
    dist = report["figure_data"]["distributions"]
    assert set(dist) == {*TABLE1_MODELS, ORACLE}
    assert sum(dist["gr"]["true"]) == sum(dist["gr"]["pred"]) == report["dataset"]["test_rows"]


def test_finished_runs_are_reused_unless_the_config_changes(table1: Path):
    before = read_report(table1)["summary"]["gr"]["mae"]["mean"]
    again = run_experiment("table1", table1, generate="tiny", rows=["gr"],
                           overrides=[*TINY, "train.progress=true"])  # progress cannot change a result
    assert again["runs"][0]["resumed"] and again["summary"]["gr"]["mae"]["mean"] == before
    changed = run_experiment("table1", table1, generate="tiny", rows=["gr"],
                             overrides=[*TINY, "gr:train.lr=1e-2"])
    assert not changed["runs"][0]["resumed"]
    assert changed["rows"]["gr"]["config"]["train"]["lr"] == 1e-2


def test_a_run_counts_as_finished_only_with_a_matching_record(table1: Path, tmp_path: Path):
    model_dir = Path(shutil.copytree(table1 / "runs" / "vr" / "seed2024", tmp_path / "vr"))
    record = json.loads((model_dir / TRAINING_RECORD).read_text())
    config = RunConfig.from_dict(record["config"])
    fingerprint = record["dataset_fingerprint"]
    assert finished_run(model_dir, config, fingerprint)["best_epoch"] == record["best_epoch"]
    assert finished_run(model_dir, config.with_overrides(["train.num_threads=2"]), fingerprint)
    assert finished_run(model_dir, config.with_overrides(["train.lr=1e-4"]), fingerprint) is None
    assert finished_run(model_dir, config, "0" * 64) is None
    (model_dir / TRAINING_RECORD).write_text("{not json")
    assert finished_run(model_dir, config, fingerprint) is None


def test_table3_with_two_seeds_reports_mean_and_std(planted_dataset: Path, tmp_path: Path):
    report = run_experiment("table3", tmp_path, planted_dataset, seeds=2, overrides=TINY,
                            figure_rows=200)
    assert report["seeds"] == [2024, 2025]
    assert list(report["summary"]) == ["manual", "binary", "dynamic_quantile", TRAIN_MEDIAN]
    for row in ("manual", "binary", "dynamic_quantile"):
        mae = report["summary"][row]["mae"]
        assert len(mae["per_seed"]) == 2 and mae["std"] is not None and mae["std"] > 0
        assert mae["mean"] == pytest.approx(sum(mae["per_seed"]) / 2)
        assert report["figure_data"]["token_frequency"][row]["vocab_kind"] == row
        assert report["rows"][row]["config"]["vocab"]["kind"] == row
    assert report["comparisons"]["manual"]["seeds"] == [2024, 2025]
    assert " ± " in (tmp_path / "report.md").read_text()
    assert report["figure_data"]["distributions"]["binary"]["rows"] == 200


def test_table4_runs_every_clem_ablation(planted_dataset: Path, tmp_path: Path):
    report = run_experiment("table4", tmp_path, planted_dataset, overrides=TINY, figure_rows=200)
    assert list(report["rows"]) == list(CLEM_ABLATIONS)
    p_truth = {r["row"]: r["history"][-1]["p_truth"] for r in report["runs"]}
    assert p_truth["no_clem"] == 1.0 and p_truth["fixed_p_0"] == 0.0
    assert p_truth["fixed_p_0.5"] == 0.5
    assert report["rows"]["cl_without_em"]["config"]["train"]["mixup"] == "none"
    assert set(report["figures"]) == FIGURES
    assert report["reference_row"] == "full" and "full" not in report["comparisons"]


def test_bad_requests_fail_before_training(planted_dataset: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="exactly one"):
        run_experiment("table1", tmp_path, planted_dataset, generate="tiny")
    with pytest.raises(ConfigError, match="seeds=0"):
        run_experiment("table1", tmp_path, planted_dataset, seeds=0)
    with pytest.raises(ConfigError, match="train.nope"):
        run_experiment("table1", tmp_path, planted_dataset, overrides=["train.nope=1"])
    assert not (tmp_path / "runs").exists()


def test_data_made_before_an_option_existed_is_reused(tmp_path: Path) -> None:
    """A processed directory whose manifest predates IngestConfig.split_draw was made with its
    default, so it is the same data; another recorded value is still refused."""
    from grmodel.data.kuairec.ingest import IngestConfig
    from grmodel.experiments.runner import made_once

    options = dataclasses.asdict(IngestConfig(seed=3))
    del options["split_draw"]
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "manifest.json").write_text(json.dumps({"options": options}))
    made_once(tmp_path / "p", IngestConfig(seed=3), "manifest.json", lambda: pytest.fail("made"))
    with pytest.raises(ConfigError, match="other settings"):
        made_once(tmp_path / "p", IngestConfig(seed=3, split_draw="hash"), "manifest.json",
                  lambda: pytest.fail("made"))
    # Nested: a tabular spec's split.draw.
    from grmodel.data.tabular import TabularSpec

    spec = TabularSpec.from_dict({"name": "t", "source": "t.csv", "label": "y",
                                  "user": {"categorical": ["u"]}, "item": {"categorical": ["i"]}})
    options = dataclasses.asdict(spec)
    del options["split"]["draw"]
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "manifest.json").write_text(json.dumps({"options": options}))
    made_once(tmp_path / "t", spec, "manifest.json", lambda: pytest.fail("made"))
    spec.split.draw = "hash"
    with pytest.raises(ConfigError, match="other settings"):
        made_once(tmp_path / "t", spec, "manifest.json", lambda: pytest.fail("made"))

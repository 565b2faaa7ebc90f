"""Experiment rows and how scoped overrides reach each row's config (no training here)."""

from __future__ import annotations

import pytest

from grmodel.comparison.plan import Overrides, base_seed, row_config
from grmodel.config import CLEM_ABLATIONS, ConfigError, RunConfig
from grmodel.experiments.specs import TABLE1_MODELS, experiment_spec


def configs(name: str, items: list[str], rows: list[str] | None = None) -> dict[str, RunConfig]:
    experiment = experiment_spec(name, rows)
    overrides = Overrides.parse(items, experiment)
    return {row.name: row_config(RunConfig(), row, overrides, "/data", 7) for row in experiment.rows}


def test_rows_are_the_papers_tables():
    assert experiment_spec("table1").row_names == list(TABLE1_MODELS)
    assert [r.model_name for r in experiment_spec("table3").rows] == ["gr"] * 3
    table4 = configs("table4", [])
    assert list(table4) == list(CLEM_ABLATIONS)
    assert table4["fixed_p_0"].train.tf_schedule == "fixed" and table4["fixed_p_0"].train.tf_fixed_p == 0.0
    assert table4["no_clem"].train.mixup == "none"
    assert {c.vocab.kind for c in configs("table3", []).values()} == {"manual", "binary", "dynamic_quantile"}


def test_scopes_apply_in_order():
    items = ["train.lr=1e-3", "tpm:head.tpm_w_var=0.5", "tpm:train.lr=2e-3", "gr:train.epochs=3"]
    table1 = configs("table1", items, ["tpm", "gr", "vr"])
    assert table1["tpm"].train.lr == 2e-3 and table1["tpm"].head == {"tpm_w_var": 0.5}
    assert table1["vr"].train.lr == 1e-3 and table1["vr"].head == {}
    assert table1["gr"].train.epochs == 3 and table1["vr"].train.epochs == 20
    assert all(c.data.processed_dir == "/data" and c.train.seed == 7 for c in table1.values())
    assert table1["tpm"].model_name == "tpm"
    # A row-scoped override may change what defines that row; the model scope reaches every row.
    table3 = configs("table3", ["manual:vocab.kind=binary", "gr:train.lr=4e-3"])
    assert table3["manual"].vocab.kind == "binary"
    assert {c.train.lr for c in table3.values()} == {4e-3}


@pytest.mark.parametrize(("name", "item", "message"), [
    ("table3", "vocab.kind=binary", "sets vocab.kind per row"),
    ("table3", "gr:vocab.kind=binary", "sets vocab.kind per row"),
    ("table4", "train.mixup=full", "sets train.mixup per row"),
    ("table1", "model_name=gr", "sets model_name itself"),
    ("table1", "data.processed_dir=/x", "use --data"),
    ("table1", "grr:train.lr=1", "neither a row of table1"),
    ("table1", "gr:train.seed=3", "every row shares the seeds"),
    ("table1", "train.lr", "expected"),
])
def test_bad_overrides_name_the_rule(name, item, message):
    with pytest.raises(ConfigError, match=message):
        Overrides.parse([item], experiment_spec(name))


def test_unknown_rows_and_experiments():
    with pytest.raises(ConfigError, match="unknown row"):
        experiment_spec("table4", ["full", "nope"])
    with pytest.raises(ConfigError, match="unknown experiment"):
        experiment_spec("table2")


def test_seeds_start_at_the_common_train_seed():
    experiment = experiment_spec("table1")
    assert base_seed(RunConfig(), Overrides.parse([], experiment)) == 2024
    assert base_seed(RunConfig(), Overrides.parse(["train.seed=11"], experiment)) == 11

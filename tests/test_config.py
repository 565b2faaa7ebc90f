from __future__ import annotations

import json

import pytest

from grmodel.config import CLEM_ABLATIONS, ConfigError, RunConfig, load_config


def test_round_trip_through_json():
    cfg = RunConfig().with_overrides(["train.lr=0.001", "model.n_layers=2", "vocab.kind=binary"])
    again = RunConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    assert again.train.lr == 0.001 and again.model.n_layers == 2


def test_overrides_are_typed_and_checked():
    cfg = RunConfig().with_overrides(["train.tf_omega=none", "data.max_train_rows=100"])
    assert cfg.train.tf_omega is None and cfg.data.max_train_rows == 100
    with pytest.raises(ConfigError, match="unknown key 'train.lrr'"):
        RunConfig().with_overrides(["train.lrr=1"])
    with pytest.raises(ConfigError, match="must be one of"):
        RunConfig().with_overrides(["vocab.kind=ternary"])
    with pytest.raises(ConfigError, match="expected int"):
        RunConfig().with_overrides(["model.n_layers=two"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        RunConfig().with_overrides(["train.lr"])


def test_head_options_accept_new_keys():
    cfg = RunConfig().with_overrides(["head.cread_M=30"])
    assert cfg.head == {"cread_M": 30}


def test_load_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model_name: gr\ntrain:\n  epochs: 3\n")
    assert load_config(path, ["train.seed=1"]).train.epochs == 3
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1, 2]\n")
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(bad)


def test_every_table4_row_is_a_valid_config():
    """Each row builds, holds the values it names, and is a configuration of its own."""
    built = {}
    for name, overrides in CLEM_ABLATIONS.items():
        config = RunConfig().with_overrides(overrides)
        for item in overrides:
            key, _, value = item.partition("=")
            section, option = key.split(".")
            assert str(getattr(getattr(config, section), option)) == value, (name, item)
        built[name] = config.to_json()
    assert built["full"] == RunConfig().to_json()  # the paper's CLEM is the default
    assert len(set(built.values())) == len(built), "two Table 4 rows are the same config"

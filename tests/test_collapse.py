"""A model that predicts (almost) one value never trains "successfully" nor gets promoted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grmodel.checkpoint import META_FILE
from grmodel.collapse import ModelCollapsed, judge
from grmodel.registry.promotion import _informative_check
from grmodel.training.loop import train_model


def test_constant_predictions_are_collapsed():
    rng = np.random.default_rng(0)
    labels = rng.lognormal(2, 1, 2_000)
    verdict = judge(np.full(2_000, 0.99), labels, float(np.median(labels)), 0.01)
    assert verdict.collapsed and "near-constant" in verdict.reason
    informative = judge(labels * rng.lognormal(0, 0.3, 2_000), labels, float(np.median(labels)), 0.01)
    assert not informative.collapsed and informative.reason == ""


def test_no_better_than_the_median_is_collapsed():
    rng = np.random.default_rng(1)
    labels = rng.lognormal(2, 1, 2_000)
    noise = rng.permutation(labels)  # spread like the labels, unrelated to them
    verdict = judge(noise, labels, float(np.median(labels)), 0.01)
    assert verdict.collapsed and "no better than the train median" in verdict.reason


# All weights zero and (almost) nothing learned: every row gets the same prediction.
CONSTANT = ["model.init_range=0.0", "train.lr=1e-12", "train.max_steps=2", "train.epochs=1"]


def test_a_constant_model_fails_its_training_run(planted_dataset, gr_config, tmp_path):
    config = gr_config(planted_dataset, *CONSTANT, "train.on_collapse=fail")
    with pytest.raises(ModelCollapsed, match="collapsed on the validation split: near-constant"):
        train_model(config, tmp_path / "model")
    assert not (tmp_path / "model").exists()  # nothing that looks like a model


def test_a_kept_constant_model_is_marked_and_never_promoted(planted_dataset, gr_config, tmp_path):
    config = gr_config(planted_dataset, *CONSTANT, "train.on_collapse=warn")
    result = train_model(config, tmp_path / "model")
    assert result.collapse["collapsed"]
    meta = json.loads((tmp_path / "model" / META_FILE).read_text())
    assert meta["collapse"]["collapsed"] and meta["collapse"]["pred_std"] == 0.0
    check = _informative_check(tmp_path / "model")
    assert check == {"check": "not collapsed", "passed": False, "detail": meta["collapse"]["reason"]}

"""``--param`` parsing: typed values, and ``overrides`` that add to the defaults unless ``!=``."""

from __future__ import annotations

import pytest

from grmodel.cli.pipeline import apply_params
from grmodel.pipeline.params import PipelineParams


def test_overrides_add_to_the_defaults_and_bang_replaces():
    # The models' own defaults live in grmodel.config.MODEL_DEFAULTS; a run's list adds to them.
    given = ["tpm:head.tpm_w_var=0.5"]
    base = PipelineParams(overrides=list(given))
    added = apply_params(base, ['overrides=["train.epochs=1"]', 'overrides=["gr:train.lr=1e-3"]'])
    assert added.overrides == [*given, "train.epochs=1", "gr:train.lr=1e-3"]
    assert apply_params(base, ['overrides!=["train.epochs=1"]']).overrides == ["train.epochs=1"]
    assert apply_params(base, ['overrides!=[]']).overrides == []
    assert base.overrides == given  # the defaults themselves are untouched


def test_other_parameters_are_set_typed():
    params = apply_params(PipelineParams(), ['baselines=["d2q"]', "seeds=3", "data_version=abc.dir",
                                             "baselines!=[\"vr\"]"])
    assert (params.baselines, params.seeds, params.data_version) == (["vr"], 3, "abc.dir")


@pytest.mark.parametrize(("item", "message"), [
    ("nope=1", "expected NAME=VALUE"), ("seeds=three", "takes JSON"),
    ('overrides="train.epochs=1"', "JSON list"),
])
def test_bad_items_are_named(item, message):
    with pytest.raises(ValueError, match=message):
        apply_params(PipelineParams(), [item])

"""Every config key is read: a key nothing reads is a setting that silently does nothing."""

from __future__ import annotations

import ast
import dataclasses
import functools
from pathlib import Path

import pytest
import torch

from grmodel.config import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig, VocabConfig
from grmodel.features import FeatureSchema, read_manifest, read_split
from grmodel.models.gr import GRModel

PACKAGE = Path(__file__).resolve().parents[1] / "grmodel"
SECTIONS = (DataConfig, VocabConfig, ModelConfig, TrainConfig, EvalConfig)
SMALL = ["model.emb_dim=16", "model.encoder_hidden=32", "model.d_model=32", "model.n_heads=4",
         "model.ffn_dim=64", "model.n_layers=2", "model.dropout=0.0"]


def _attributes_read() -> set[str]:
    """Every ``x.name`` read anywhere in the package, config.py (where keys are declared) aside."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "config.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
    return names


@pytest.mark.parametrize("section", SECTIONS, ids=lambda c: c.__name__)
def test_every_config_key_is_read_by_the_package(section):
    read = _attributes_read()
    unread = [f.name for f in dataclasses.fields(section) if f.name not in read]
    assert not unread, f"{section.__name__} keys nothing reads: {unread}"


# GR's loss-shaping keys, each with a value that must change one CLEM step's loss or gradient
# (on a base of CLEM at a fixed p = 0.5, or the schedule named first).
CHANGES_THE_LOSS = [
    ("vocab.label_scale=100",),
    ("vocab.q_start=0.99",),
    ("vocab.kind=binary",),
    ("model.window_size=4",),
    ("model.init_range=0.01",),
    ("model.decode=argmax",),
    ("train.mixup_window=2",),
    ("train.mixup=full",),
    ("train.clem_pass1=detached",),
    ("train.lambda_ce=1.0",),
    ("train.lambda_huber=5.0",),
    ("train.huber_delta=0.1",),
    ("train.huber_unit=0.01",),
    ("train.tf_fixed_p=0.2",),
    ("train.tf_schedule=linear",),
    ("train.tf_schedule=linear", "train.tf_p0=0.3"),
    ("train.tf_schedule=linear", "train.tf_k=0.001"),
    ("train.tf_schedule=inverse_sigmoid", "train.tf_omega=3.0"),
]


@functools.cache
def _clem_loss(dataset: Path, overrides: tuple[str, ...]) -> float:
    manifest = read_manifest(dataset)
    schema = FeatureSchema.from_dict(manifest["features"])
    frame = read_split(dataset, "train")
    config = RunConfig().with_overrides([*SMALL, "train.tf_schedule=fixed", "train.tf_fixed_p=0.5",
                                         *overrides])
    # label_state fitting reads the whole train split; the loss only 32 rows of it.
    labels = frame["label"].to_numpy()
    torch.manual_seed(0)
    model = GRModel(schema, config, GRModel.fit_label_state(labels, config))
    ids, mask = schema.arrays(frame)
    batch = {"ids": torch.as_tensor(ids[:32]), "mask": torch.as_tensor(mask[:32]),
             "label": torch.as_tensor(labels[:32].copy(), dtype=torch.float32),
             "tokens": torch.as_tensor(model.targets(labels[:32])["tokens"])}
    torch.manual_seed(1)
    loss, _ = model.loss(batch, step=10, total_steps=100)
    loss.backward()
    # The gradient too: the detached pass 1 changes the gradient, not the loss value.
    grad = sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None)
    return float(loss) + grad


@pytest.mark.parametrize("overrides", CHANGES_THE_LOSS, ids="+".join)
def test_gr_loss_keys_change_the_training_step(planted_dataset, overrides):
    base = overrides[:-1]
    assert _clem_loss(planted_dataset, overrides) != pytest.approx(
        _clem_loss(planted_dataset, base), rel=1e-6)

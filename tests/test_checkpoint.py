"""Checkpoint integrity: digests recorded on save, verified on every load."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from grmodel.checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from grmodel.data.io import sha256_file


@pytest.fixture
def model_dir(shop_model: dict, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(shop_model["model"], target)
    return target


def flip_4kb(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset: offset + 4096] = bytes(b ^ 0xFF for b in data[offset: offset + 4096])
    path.write_bytes(bytes(data))


def test_digests_are_recorded_and_match(model_dir: Path) -> None:
    meta = json.loads((model_dir / META_FILE).read_text())
    assert meta["format"] == "grmodel.checkpoint/2"
    assert meta["sha256"][WEIGHTS_FILE] == sha256_file(model_dir / WEIGHTS_FILE)
    load_checkpoint(model_dir)


def test_a_flipped_4kb_region_is_refused_naming_the_file(model_dir: Path) -> None:
    # A damaged weights file is refused: without the digest check, flipping 4 KB inside
    # model.pt loaded silently and predicted values up to 139 s off.
    weights = model_dir / WEIGHTS_FILE
    flip_4kb(weights, weights.stat().st_size // 2)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(model_dir)
    message = str(caught.value)
    assert message.startswith(f"{weights}: sha256 differs") and "\n" not in message
    assert "rule: checkpoint integrity" in message


def test_an_altered_encoder_file_is_refused(model_dir: Path) -> None:
    path = model_dir / "encoders.json"
    encoders = json.loads(path.read_text())
    encoders["fields"]["country"]["values"] = ["fr", "de", "us"]  # ids silently swapped
    path.write_text(json.dumps(encoders))
    with pytest.raises(CheckpointError, match=r"encoders.json: sha256 differs"):
        load_checkpoint(model_dir)


def test_a_digest_removed_from_a_v2_checkpoint_is_refused(model_dir: Path) -> None:
    meta = json.loads((model_dir / META_FILE).read_text())
    del meta["sha256"]
    (model_dir / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"no sha256 of model.pt \(rule: a"):
        load_checkpoint(model_dir)


def test_an_old_checkpoint_without_digests_loads_with_a_warning(model_dir: Path,
                                                                 caplog) -> None:
    """The documented decision: /1 checkpoints (no digests) load, unverified, with a warning."""
    weights = model_dir / WEIGHTS_FILE
    payload = torch.load(weights, weights_only=True)
    meta = json.loads(payload["meta"])
    meta["format"] = "grmodel.checkpoint/1"
    torch.save({"state_dict": payload["state_dict"], "meta": json.dumps(meta)}, weights)
    (model_dir / META_FILE).write_text(json.dumps(meta))
    (model_dir / "encoders.json").unlink()
    with caplog.at_level(logging.WARNING, logger="grmodel.checkpoint"):
        model, loaded = load_checkpoint(model_dir)
    assert "integrity not verified" in caplog.text
    # Re-saving adds the digests.
    save_checkpoint(model_dir, model, loaded)
    assert json.loads((model_dir / META_FILE).read_text())["format"] == "grmodel.checkpoint/2"
    caplog.clear()
    load_checkpoint(model_dir)
    assert "integrity not verified" not in caplog.text

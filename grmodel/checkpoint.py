"""Self-describing checkpoints: weights plus the JSON record needed to rebuild the model.

``model.pt`` holds ``{"state_dict": ..., "meta": "<json>"}`` and is read with
``torch.load(weights_only=True)``: tensors, strings and numbers only, never a pickled class.
``checkpoint.json`` repeats the metadata for people and tools that do not load torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from grmodel import __version__
from grmodel.atomic import atomic_file, write_json_atomic
from grmodel.config import RunConfig
from grmodel.features import FeatureSchema
from grmodel.models import WatchTimeModel, model_class

FORMAT = "grmodel.checkpoint/1"
WEIGHTS_FILE = "model.pt"
META_FILE = "checkpoint.json"


class CheckpointError(ValueError):
    """A model directory that cannot be loaded (names the file and what is wrong)."""


def checkpoint_meta(
    model: WatchTimeModel, *, epoch: int, step: int, metrics: dict[str, Any], history: list[dict]
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model_name": model.name,
        "config": model.config.to_dict(),
        "features": model.schema.to_dict(),
        "label_state": model.label_state,
        "epoch": epoch,
        "step": step,
        "best_valid": metrics,
        "history": history,
        "grmodel_version": __version__,
        "torch_version": torch.__version__,
    }


def save_checkpoint(model_dir: str | Path, model: WatchTimeModel, meta: dict[str, Any]) -> None:
    """Write weights and metadata, each atomically (temporary file, then rename)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_file(model_dir / WEIGHTS_FILE) as tmp:
        torch.save({"state_dict": state, "meta": json.dumps(meta)}, tmp)
    write_json_atomic(model_dir / META_FILE, meta)


def load_checkpoint(
    model_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[WatchTimeModel, dict[str, Any]]:
    """Rebuild a model from its directory, in eval mode, on ``device``."""
    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (rule: a model directory holds {WEIGHTS_FILE})")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        meta = json.loads(payload["meta"])
    except Exception as exc:  # corrupt or foreign file: one clear message, no torch internals
        raise CheckpointError(f"{path}: not a readable grmodel checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    config = RunConfig.from_dict(meta["config"])
    schema = FeatureSchema.from_dict(meta["features"])
    model = model_class(meta["model_name"])(schema, config, meta["label_state"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), meta

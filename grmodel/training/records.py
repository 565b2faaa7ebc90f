"""What a finished training run records, the one identity of a dataset, and the one rule for
"is this the same run".

``training.json`` beside a trained model (written after the model, so it marks the run finished)
holds the config, the dataset fingerprint, timings and the validation history. In-pod training,
a PyTorchJob's model, the experiment runner and the pipeline all write it through
:func:`write_training_record` and reuse a finished run through :func:`finished_run`; a model
directory alone (its checkpoint, which records the same fingerprint) is reused through
:func:`finished_model`.

A dataset is identified by :func:`dataset_fingerprint` everywhere. Configs are compared leaf by
leaf with :func:`config_differences`, and a recorded run against a new one by :func:`same_run`;
what may differ depends on the question, and each answer is a named set of keys here:
:data:`RESUME_FREE_KEYS` (a killed run and its resumption) and :data:`RESULT_NEUTRAL_KEYS` (a
finished run and a new one whose dataset has the same fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grmodel.atomic import jsonable, through_json, write_text_atomic
from grmodel.checkpoint import META_FILE, CheckpointError, trusted_meta, weights_path
from grmodel.config import RunConfig
from grmodel.data.io import sha256_file
from grmodel.features import SPLITS

log = logging.getLogger(__name__)

TRAINING_RECORD = "training.json"
# Settings that may change between a killed run and its resumption: they do not change results.
RESUME_FREE_KEYS = frozenset({"train.progress", "train.num_threads", "train.loader_workers",
                              "train.checkpoint_every_steps", "train.device"})
# Keys that cannot change a finished run's result: a run that differs only in these is reused.
# data.processed_dir: where a stage sees the dataset; the fingerprint names the data itself.
RESULT_NEUTRAL_KEYS = frozenset({"train.progress", "train.num_threads", "data.processed_dir", "eval"})


@dataclass
class TrainResult:
    model_dir: Path
    best_epoch: int
    best_valid: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0  # over all ranks
    collapse: dict[str, Any] | None = None  # grmodel/collapse.py verdict (rank 0; None elsewhere)


def config_differences(saved: dict[str, Any], current: dict[str, Any],
                       ignore: frozenset[str] = frozenset()) -> list[str]:
    """Dotted keys whose values differ between two ``RunConfig.to_dict()`` trees (each read
    back through :class:`RunConfig`, so older records gain today's defaults), leaving out the
    keys in ``ignore`` and every key of a section named there."""
    return differences(_normal(saved), _normal(current), ignore=ignore)


def differences(a: Any, b: Any, path: str = "", ignore: frozenset[str] = frozenset()) -> list[str]:
    """Leaf paths (``section.key``, ``list[3]``) where two JSON-like values differ; NaN equals
    NaN. Used for configs and, by grmodel/reproduce.py, for recorded metrics."""
    if path in ignore:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [*a, *(k for k in b if k not in a)]
        return [d for key in keys for d in differences(a.get(key, MISSING), b.get(key, MISSING),
                                                      f"{path}.{key}" if path else str(key), ignore)]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{path} (length {len(a)} vs {len(b)})"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", ignore)]
    same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return [] if same else [path]


MISSING = "<missing>"


def _normal(config: dict[str, Any]) -> dict[str, Any]:
    return through_json(RunConfig.from_dict(config).to_dict())


def dataset_fingerprint(processed_dir: str | Path) -> str:
    """sha256 over the manifest and the three split files (a split stored as a directory: its
    Parquet part files, in order): the one identity of a processed dataset."""
    root = Path(processed_dir)
    digest = hashlib.sha256()
    for name in ("manifest.json", *(f"{split}.parquet" for split in SPLITS)):
        path = root / name
        for part in sorted(path.glob("*.parquet")) if path.is_dir() else [path]:
            digest.update(f"{part.relative_to(root).as_posix()}:{sha256_file(part)}\n".encode())
    return digest.hexdigest()


def trained_on(processed_dir: str | Path) -> str | None:
    """The fingerprint a trained model records of its dataset; None for arrays given to
    :func:`~grmodel.training.loop.fit` without one."""
    if not processed_dir or not (Path(processed_dir) / "manifest.json").is_file():
        return None
    return dataset_fingerprint(processed_dir)


def write_training_record(result: TrainResult, config: RunConfig, fingerprint: str, wall_seconds: float,
                     **extra: Any) -> dict[str, Any]:
    """Write ``training.json`` beside a trained model (it marks the run finished); the record."""
    record = {
        "config": config.to_dict(),
        "dataset_fingerprint": fingerprint,
        "wall_seconds": wall_seconds,
        "train_seconds": result.train_seconds,
        "samples_per_second": result.samples_per_second,
        "best_epoch": result.best_epoch,
        "best_valid": result.best_valid,
        "history": result.history,
        "collapse": result.collapse,
        **extra,
    }
    write_text_atomic(result.model_dir / TRAINING_RECORD, json.dumps(jsonable(record), indent=2))
    return record


def same_run(recorded_config: dict[str, Any], recorded_fingerprint: str | None, config: RunConfig,
             fingerprint: str | None, free_keys: frozenset[str]) -> bool:
    """Whether a recorded run is one of ``config`` on the dataset of ``fingerprint``: the same
    dataset, and configs that differ in ``free_keys`` at most."""
    return (recorded_fingerprint == fingerprint
            and not config_differences(recorded_config, config.to_dict(), free_keys))


def finished_run(model_dir: Path, config: RunConfig, fingerprint: str) -> dict[str, Any] | None:
    """The record of a finished run of ``config`` on this data in ``model_dir`` (its
    ``training.json``), else None."""
    path = model_dir / TRAINING_RECORD
    if not (path.is_file() and weights_path(model_dir).is_file()):
        return None
    try:
        record = json.loads(path.read_text())
        # training.json is an editable record: the config it states must also be the one the
        # checkpoint's digests cover (and so must the dataset, where the checkpoint names it).
        meta = trusted_meta(model_dir)
        same = (same_run(record["config"], record["dataset_fingerprint"], config, fingerprint,
                         RESULT_NEUTRAL_KEYS)
                and same_run(meta["config"], meta.get("dataset_fingerprint") or fingerprint,
                             config, fingerprint, RESULT_NEUTRAL_KEYS))
    except (ValueError, KeyError, TypeError):  # unreadable, or written by another config version
        same = False
    if not same:
        log.info("%s was trained with another config or dataset: training again", model_dir)
        return None
    return record


def finished_model(config: RunConfig, out_dir: str | Path) -> TrainResult | None:
    """The finished model of ``config`` on its dataset in ``out_dir`` (its checkpoint, as
    ``grmodel train`` and a PyTorchJob's pods leave it), else None. A model may be reused by
    the run that trained it when resumed: the keys free between a run and its resumption."""
    out = Path(out_dir)
    if not (weights_path(out).is_file() and (out / META_FILE).is_file()):
        return None
    try:
        meta = trusted_meta(out)  # what decides reuse is covered by a digest
        same = same_run(meta["config"], meta.get("dataset_fingerprint"), config,
                        trained_on(config.data.processed_dir), RESUME_FREE_KEYS)
    except CheckpointError as exc:
        log.warning("%s: not reused (%s)", out, exc)
        return None
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or of another version
        return None
    if not same:
        return None
    return TrainResult(model_dir=out, best_epoch=meta["epoch"], best_valid=meta["best_valid"],
                       history=meta["history"], collapse=meta.get("collapse"))

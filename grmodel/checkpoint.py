"""Self-describing checkpoints: weights plus the JSON record needed to rebuild the model.

``model.pt`` holds ``{"state_dict": ..., "meta": "<json>"}`` and is read with
``torch.load(weights_only=True)``: tensors, strings and numbers only, never a pickled class.
``checkpoint.json`` repeats the metadata for people and tools that do not load torch, and
records the sha256 of ``model.pt`` (and of ``encoders.json``, the feature encoders of the
training data, when the model has them). Every load verifies those digests before reading a
byte of the weights: a corrupt or altered file is refused, naming it.

What decides a checkpoint's use (its config, the dataset it was trained on: whether a finished
model is reused) is never trusted from an editable JSON file alone: ``checkpoint.json`` must
agree with the metadata inside ``model.pt``, whose digest it records.

A model that is not a torch module (an :class:`~grmodel.models.ArrayModel`, the GBDT) writes
its fitted state as text into the file its class names (``model.txt``: LightGBM's own format)
instead of ``model.pt``; ``checkpoint.json`` then carries the metadata, that file's sha256 and
the sha256 of the metadata itself (:func:`meta_digest`, as no weights file carries a copy), and
the model parses the text back (nothing is unpickled).

Checkpoints written before digests were recorded (format ``grmodel.checkpoint/1``) still load,
with a warning that their integrity is not verified: refusing them would strand every model
already registered. Re-save one (``save_checkpoint(dir, *load_checkpoint(dir))``) to add
digests. A ``/2`` checkpoint whose ``checkpoint.json`` lacks them is refused.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from grmodel import __version__
from grmodel.atomic import atomic_file, write_json_atomic
from grmodel.config import RunConfig
from grmodel.data.io import sha256_file
from grmodel.features import (
    ENCODERS_FILE,
    DatasetError,
    FeatureSchema,
    check_encoders,
    read_encoders,
)
from grmodel.models import ArrayModel, ZooModel, model_class

log = logging.getLogger(__name__)

FORMAT = "grmodel.checkpoint/2"
UNVERIFIED_FORMATS = ("grmodel.checkpoint/1",)  # no digests: loaded with a warning
WEIGHTS_FILE = "model.pt"
META_FILE = "checkpoint.json"
DIGESTS = "sha256"  # checkpoint.json: {file name: hex digest}
# checkpoint.json of an array model: the sha256 of its own metadata (meta_digest), which no
# weights file carries for it
META_DIGEST = "meta_sha256"


class CheckpointError(ValueError):
    """A model directory that cannot be loaded (names the file and what is wrong)."""


def checkpoint_meta(
    model: ZooModel, *, epoch: int, step: int, metrics: dict[str, Any], history: list[dict]
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


# What torch.save raises (a RuntimeError) when the file system refuses a write.
_WRITE_FAILURES = ("inline_container", "PytorchStreamWriter", "file write failed", "unexpected pos")


def save_tensors(payload: Any, path: str | Path) -> None:
    """``torch.save``; a write the file system refuses (a full disk, a file-size limit) is an
    OSError naming the file, as every other write grmodel does, not torch's RuntimeError."""
    path = Path(path)
    try:
        torch.save(payload, path)
    except RuntimeError as exc:
        if not any(text in str(exc) for text in _WRITE_FAILURES):
            raise
        try:
            stats = os.statvfs(path.parent)
            full = stats.f_bavail * stats.f_frsize < (1 << 20)
        except OSError:
            full = False
        why = ("no space left on device" if full else
               "the file system refused the write: disk full, quota or file-size limit")
        # The file it stands for, not the temporary of an atomic write (.NAME.<hex>.tmp).
        shown = path.with_name(re.sub(r"^\.(.+)\.[0-9a-f]{8}\.tmp$", r"\1", path.name))
        raise OSError(errno.ENOSPC if full else errno.EIO, f"{shown}: cannot write ({why})"
                      ) from None


def save_checkpoint(
    model_dir: str | Path,
    model: ZooModel,
    meta: dict[str, Any],
    encoders: dict[str, Any] | None = None,
) -> None:
    """Write weights, the encoders (if given) and metadata with their digests, each atomically
    (temporary file, then rename); ``checkpoint.json`` goes last."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "format": FORMAT}
    meta.pop(DIGESTS, None)
    meta.pop(META_DIGEST, None)
    digests = {}
    if isinstance(model, ArrayModel):
        with atomic_file(model_dir / model.weights_file) as tmp:
            tmp.write_text(model.to_text())
            digests[model.weights_file] = sha256_file(tmp)
        # No weights file carries this model's metadata: its digest is recorded instead.
        record = {**meta, META_DIGEST: meta_digest(meta)}
    else:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        with atomic_file(model_dir / WEIGHTS_FILE) as tmp:
            save_tensors({"state_dict": state, "meta": json.dumps(meta)}, tmp)
            digests[WEIGHTS_FILE] = sha256_file(tmp)
        record = meta
    if encoders is not None:
        check_encoders(encoders, model.schema, ENCODERS_FILE)
        with atomic_file(model_dir / ENCODERS_FILE) as tmp:
            tmp.write_text(json.dumps(encoders) + "\n")
            digests[ENCODERS_FILE] = sha256_file(tmp)
    write_json_atomic(model_dir / META_FILE, {**record, DIGESTS: digests})


def data_encoders(processed_dir: str | Path, schema: FeatureSchema) -> dict[str, Any] | None:
    """The encoders of a processed dataset, for a model of ``schema`` trained on it (None when
    the dataset has none, or they are not this schema's: arrays passed without their data)."""
    encoders = read_encoders(processed_dir)
    if encoders is None:
        return None
    try:
        check_encoders(encoders, schema, str(Path(processed_dir) / ENCODERS_FILE))
    except DatasetError as exc:
        log.warning("%s: not copied into the model", exc)
        return None
    return encoders


def verify_checkpoint(model_dir: str | Path) -> dict[str, str] | None:
    """Check every digest ``checkpoint.json`` records; return them (None for a checkpoint
    without digests, which is the caller's to judge)."""
    model_dir = Path(model_dir)
    path = model_dir / META_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from None
    digests = record.get(DIGESTS) if isinstance(record, dict) else None
    if not isinstance(digests, dict):
        return None
    for name, expected in digests.items():
        file = model_dir / name
        if not file.is_file():
            raise CheckpointError(f"{file}: not found (rule: every file {META_FILE} lists)")
        if sha256_file(file) != expected:
            raise CheckpointError(f"{file}: sha256 differs from the one {META_FILE} records"
                                  " (rule: checkpoint integrity; the file is corrupt or altered)")
    return digests


def checkpoint_files(model_dir: str | Path) -> list[str]:
    """Every file of the checkpoint in ``model_dir``: ``checkpoint.json`` and the files its
    digests cover (the weights, e.g. encoders.json); ``model.pt`` for a checkpoint without
    digests."""
    digests = verify_checkpoint(model_dir) or {WEIGHTS_FILE: None}
    return [META_FILE, *sorted(name for name in digests if name != META_FILE)]


def array_model_class(model_dir: str | Path) -> type[ArrayModel] | None:
    """The model class of the checkpoint in ``model_dir`` when it is an array model (its
    ``checkpoint.json`` names one), else None (a torch checkpoint, or none at all)."""
    path = Path(model_dir) / META_FILE
    try:
        name = json.loads(path.read_text()).get("model_name")
        cls = model_class(name)
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return cls if issubclass(cls, ArrayModel) else None


def weights_path(model_dir: str | Path) -> Path:
    """The weights file of the checkpoint in ``model_dir``: ``model.pt``, or the text file of
    an array model (its class names it)."""
    cls = array_model_class(model_dir)
    return Path(model_dir) / (cls.weights_file if cls is not None else WEIGHTS_FILE)


def _read_weights(model_dir: str | Path, device: str | torch.device
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """model.pt's payload and the metadata it carries (the copy its digest covers), after every
    digest is verified and ``checkpoint.json`` is checked to agree with that metadata."""
    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (rule: a model directory holds {WEIGHTS_FILE})")
    digests = verify_checkpoint(model_dir)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
        meta = json.loads(payload["meta"])
    except Exception as exc:  # corrupt or foreign file: one clear message, no torch internals
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable grmodel checkpoint ({first})") from None
    fmt = meta.get("format")
    if fmt in UNVERIFIED_FORMATS:
        log.warning("%s: written before checkpoints recorded digests (%s): integrity not"
                    " verified", path, fmt)
        return payload, meta
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: format {fmt!r}, expected {FORMAT!r}")
    if digests is None or WEIGHTS_FILE not in digests:
        raise CheckpointError(f"{Path(model_dir) / META_FILE}: no sha256 of {WEIGHTS_FILE}"
                              f" (rule: a {FORMAT} checkpoint records its digests)")
    record = json.loads((Path(model_dir) / META_FILE).read_text())
    record.pop(DIGESTS, None)
    changed = sorted(k for k in {*record, *meta}
                     if json.dumps(record.get(k), sort_keys=True) != json.dumps(meta.get(k),
                                                                              sort_keys=True))
    if changed:
        raise CheckpointError(f"{Path(model_dir) / META_FILE}: differs from the metadata"
                              f" {WEIGHTS_FILE} carries in {changed[:6]} (rule: checkpoint"
                              f" integrity; {META_FILE} records {WEIGHTS_FILE}'s metadata, an"
                              " edited copy is refused)")
    return payload, meta


def meta_digest(meta: dict[str, Any]) -> str:
    """The sha256 of a checkpoint's metadata (every key but the digests), as written to JSON
    and read back: what ``checkpoint.json`` of an array model records of itself."""
    kept = {k: v for k, v in meta.items() if k not in (DIGESTS, META_DIGEST)}
    text = json.dumps(json.loads(json.dumps(kept)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def trusted_meta(model_dir: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint that a decision may rest on (reusing a finished model),
    never an editable JSON file alone: the copy inside model.pt, whose digest is verified; for
    an array model, ``checkpoint.json`` checked against the digest of its metadata."""
    cls = array_model_class(model_dir)
    if cls is not None:
        return _read_array_meta(Path(model_dir), cls)
    return _read_weights(model_dir, "cpu")[1]


def load_checkpoint(
    model_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[ZooModel, dict[str, Any]]:
    """Rebuild a model from its directory, in eval mode, on ``device`` (digests verified; an
    array model runs on the CPU whatever ``device``)."""
    cls = array_model_class(model_dir)
    if cls is not None:
        return _load_array_model(Path(model_dir), cls)
    path = Path(model_dir) / WEIGHTS_FILE
    payload, meta = _read_weights(model_dir, device)
    try:
        config = RunConfig.from_dict(meta["config"])
        schema = FeatureSchema.from_dict(meta["features"])
        model = model_class(meta["model_name"])(schema, config, meta["label_state"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: weights or metadata do not fit the model ({first})"
                              " (rule: a complete grmodel checkpoint)") from None
    return model.to(device).eval(), meta


def _read_array_meta(model_dir: Path, cls: type[ArrayModel]) -> dict[str, Any]:
    """The metadata of an array model's checkpoint, after every digest is verified (its text
    file's required) and ``checkpoint.json`` is checked against its metadata's digest."""
    path = model_dir / cls.weights_file
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (rule: a {cls.name} model directory holds"
                              f" {cls.weights_file})")
    digests = verify_checkpoint(model_dir)
    meta = json.loads((model_dir / META_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{model_dir / META_FILE}: format {meta.get('format')!r}, expected"
                              f" {FORMAT!r}")
    if digests is None or cls.weights_file not in digests:
        raise CheckpointError(f"{model_dir / META_FILE}: no sha256 of {cls.weights_file}"
                              f" (rule: a {FORMAT} checkpoint records its digests)")
    if meta.get(META_DIGEST) != meta_digest(meta):
        why = "differs from the one it records" if META_DIGEST in meta else "is not recorded"
        raise CheckpointError(f"{model_dir / META_FILE}: the sha256 of its metadata {why}"
                              f" (rule: checkpoint integrity; what decides a {cls.name} model's"
                              f" use is covered by a digest, an edited {META_FILE} is refused)")
    meta.pop(DIGESTS, None)
    meta.pop(META_DIGEST, None)
    return meta


def _load_array_model(model_dir: Path, cls: type[ArrayModel]) -> tuple[ArrayModel, dict[str, Any]]:
    """An array model from ``checkpoint.json`` and its text file (both verified)."""
    path = model_dir / cls.weights_file
    meta = _read_array_meta(model_dir, cls)
    try:
        model = cls(FeatureSchema.from_dict(meta["features"]), RunConfig.from_dict(meta["config"]),
                    meta["label_state"])
        model.load_text(path.read_text(encoding="utf-8"))
    except Exception as exc:  # a foreign or damaged file: one clear message, no library internals
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable {cls.name} model ({first}) (rule: a"
                              " complete grmodel checkpoint)") from None
    return model, meta


def load_encoders(model_dir: str | Path, schema: FeatureSchema) -> dict[str, Any]:
    """The model's feature encoders (verified with its checkpoint), checked against ``schema``."""
    path = Path(model_dir) / ENCODERS_FILE
    encoders = read_encoders(model_dir)
    if encoders is None:
        raise CheckpointError(f"{path}: not found (rule: raw ids need the encoders of the"
                              " model's training data; retrain on a dataset built by this"
                              " grmodel version)")
    try:
        check_encoders(encoders, schema, str(path))
    except DatasetError as exc:
        raise CheckpointError(str(exc)) from None
    return encoders

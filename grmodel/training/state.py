"""Resumable training state: everything a killed run needs to continue where it stopped.

Given a state directory, rank 0 writes the whole training state there (weights, optimiser,
best-so-far, position in the epoch, every rank's RNG) at each epoch end and every
``train.checkpoint_every_steps`` steps; a resumed run must be the same run: the same config
(but for :data:`grmodel.training.records.RESUME_FREE_KEYS`), label state and world size.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from grmodel import __version__
from grmodel.atomic import atomic_file, write_json_atomic
from grmodel.checkpoint import save_tensors
from grmodel.config import RunConfig
from grmodel.distributed import DistContext, all_gather_tensor
from grmodel.models import WatchTimeModel
from grmodel.outputs import (
    MARKER,
    OutputError,
    check_safe,
    marker_kind,
    write_marker,
)
from grmodel.training.records import RESUME_FREE_KEYS, config_differences, through_json

STATE_FORMAT = "grmodel.train_state/1"
STATE_FILE = "state.pt"
STATE_SUMMARY = "state.json"
STATE_KIND = "train_state"  # the marker's kind: a directory a training wrote its state into
STATE_FILES = (STATE_FILE, STATE_SUMMARY, MARKER)  # all a state directory holds, and all removed

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Everything besides tensors that a resumed run needs to continue where it stopped."""

    epoch: int = 0
    batch: int = 0  # batches of ``epoch`` already trained
    step: int = 0
    best: dict[str, float] | None = None
    best_epoch: int = -1
    best_step: int = 0
    stale: int = 0
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    running: float = 0.0  # loss sum and samples of the unfinished epoch, over all ranks
    count: int = 0
    seen: int = 0
    busy: float = 0.0



class StateStore:
    """``state.pt`` (tensors, read with ``weights_only=True``) and ``state.json`` (a summary
    for people and tools) in one directory; written by rank 0 only, each file atomically.

    The directory is grmodel's own: new, empty, or marked as a training state by an earlier
    run (:meth:`claim`); removing it deletes only the files a training writes there.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE

    def claim(self, inputs: Iterable[str | Path] = ()) -> None:
        """Refuse, before any work, a state directory that is not grmodel's to write and later
        remove: the working directory or above it, one that overlaps an input, or an existing
        directory with anything in it but an earlier training's state."""
        path = self.directory
        try:
            check_safe(path, inputs)
        except OutputError as exc:
            raise OutputError(str(exc).replace("output ", "state directory ", 1)) from None
        if not path.exists() and not path.is_symlink():
            return
        if path.is_symlink() or not path.is_dir():
            raise OutputError(f"state directory {path}: exists and is not a directory (rule: a"
                              " training state directory is grmodel's own: new, empty, or an"
                              " earlier training's state)")
        if any(path.iterdir()) and marker_kind(path) != STATE_KIND:
            raise OutputError(f"state directory {path}: holds files grmodel did not write (rule:"
                              " a training state directory is grmodel's own: new, empty, or an"
                              " earlier training's state; choose another --state-dir)")

    def save(self, config: RunConfig, model: WatchTimeModel, optimizer: torch.optim.Optimizer,
             best_state: dict[str, torch.Tensor], p: Progress, ctx: DistContext) -> None:
        # Every rank's RNG, so each resumes its own dropout / CLEM stream (a collective call).
        rng = torch.stack(all_gather_tensor(torch.get_rng_state(), ctx))
        cuda_rng = torch.empty(0, dtype=torch.uint8)
        if ctx.device.type == "cuda":
            cuda_rng = torch.stack(all_gather_tensor(torch.cuda.get_rng_state(ctx.device), ctx))
        if not ctx.is_main:
            return
        fresh = not self.directory.exists()
        try:
            self._write(config, model, optimizer, best_state, p, ctx, rng, cuda_rng)
        except BaseException:
            # A first save that failed (a full disk) leaves no state directory behind that a
            # later run would mistake for a state, or that blocks it.
            if fresh and not self.path.is_file():
                self._remove_files()
            raise

    def _write(self, config: RunConfig, model: WatchTimeModel, optimizer: torch.optim.Optimizer,
               best_state: dict[str, torch.Tensor], p: Progress, ctx: DistContext,
               rng: torch.Tensor, cuda_rng: torch.Tensor) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if marker_kind(self.directory) != STATE_KIND:
            write_marker(self.directory, STATE_KIND)
        meta = {
            "format": STATE_FORMAT,
            "config": config.to_dict(),
            "label_state": model.label_state,
            "world_size": ctx.world_size,
            "progress": {k: v for k, v in vars(p).items()},
            "grmodel_version": __version__,
            "saved_at": time.time(),
        }
        payload = {
            "meta": json.dumps(meta),
            "model": _cpu(model.state_dict()),
            "optimizer": optimizer.state_dict(),
            "best_model": _cpu(best_state),
            "rng": rng,
            "cuda_rng": cuda_rng,
        }
        with atomic_file(self.path) as tmp:
            save_tensors(payload, tmp)
        summary = {k: meta[k] for k in ("format", "world_size", "grmodel_version", "saved_at")}
        summary.update({k: getattr(p, k) for k in ("epoch", "batch", "step", "best", "stopped")})
        write_json_atomic(self.directory / STATE_SUMMARY, summary)

    def load(self, config: RunConfig, ctx: DistContext) -> dict[str, Any] | None:
        """The saved state of this run, or None when there is none (every rank reads it: the
        state directory must be on storage that all ranks see)."""
        payload = self._read(config, ctx)
        step = -1 if payload is None else int(payload["meta"]["progress"]["step"])
        steps = [int(t.item()) for t in all_gather_tensor(torch.tensor([step]), ctx)]
        if len(set(steps)) > 1:
            raise ValueError(f"{self.path}: the ranks see different training states (steps"
                             f" {steps}, -1 = none); rule: the state directory must be on storage"
                             " shared by every rank (a ReadWriteMany volume across nodes)")
        return payload

    def _read(self, config: RunConfig, ctx: DistContext) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=True)
            meta = json.loads(payload["meta"])
        except Exception as exc:  # a foreign or damaged file: one clear message
            raise ValueError(f"{self.path}: not a readable grmodel training state ({exc})") from None
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"{self.path}: format {meta.get('format')!r}, expected {STATE_FORMAT!r}")
        diffs = config_differences(meta["config"], config.to_dict(), RESUME_FREE_KEYS)
        if diffs:
            raise ValueError(f"{self.path}: the saved state is of another config (differs in"
                             f" {diffs[:6]}); rule: --resume continues the same run only: remove"
                             f" {self.directory} to start afresh")
        if meta["world_size"] != ctx.world_size:
            raise ValueError(f"{self.path}: saved by {meta['world_size']} processes, resumed by"
                             f" {ctx.world_size} (rule: resume with the same --nproc_per_node and"
                             " nodes: each rank's data shard depends on the world size)")
        payload["meta"] = meta
        return payload

    def remove(self) -> None:
        """Delete the files a training wrote here (and temporaries of a killed write), then
        the directory if nothing else is left in it."""
        if marker_kind(self.directory) != STATE_KIND:
            return  # not a state this process wrote (it never saved one)
        self._remove_files()

    def _remove_files(self) -> None:
        for name in STATE_FILES:
            (self.directory / name).unlink(missing_ok=True)
        for name in (STATE_FILE, STATE_SUMMARY):
            for stale in self.directory.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        try:
            self.directory.rmdir()
        except OSError:
            log.warning("%s: kept, it holds files besides the training state", self.directory)



def restore(saved: dict[str, Any], model: WatchTimeModel, optimizer: torch.optim.Optimizer,
             ctx: DistContext) -> tuple[Progress, dict[str, torch.Tensor]]:
    meta = saved["meta"]
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    # clone(): set_rng_state reads a row of the stacked states wrongly (a crash) when given a view.
    torch.set_rng_state(saved["rng"][ctx.rank].clone())
    if ctx.device.type == "cuda" and len(saved["cuda_rng"]):
        torch.cuda.set_rng_state(saved["cuda_rng"][ctx.rank].clone(), ctx.device)
    best = {k: v.to(ctx.device) for k, v in saved["best_model"].items()} if ctx.is_main else {}
    return Progress(**meta["progress"]), best


def resumed_label_state(saved: dict[str, Any] | None, given: dict[str, Any] | None,
                         store: StateStore | None) -> dict[str, Any] | None:
    if saved is None:
        return given
    state = saved["meta"]["label_state"]
    if given is not None and through_json(given) != state:
        raise ValueError(f"{store.path if store else 'state'}: the given label state differs from"
                         " the one the saved run trained with (rule: resume the same run only)")
    return state



def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}

"""How training shows its progress: a bar on a terminal, plain lines in a log, events for a runner.

A progress bar redraws itself with carriage returns: right on a terminal, a pile of
screen-widths in a file or a pipe. So :func:`epoch_progress` picks, per epoch:

* events, when ``GRMODEL_PROGRESS_EVENTS`` is set (the local pipeline runner sets it for its
  steps): ``grmodel-progress {json}`` lines on stdout, at most one every ``interval`` seconds
  and one at each epoch end, which the runner draws as a bar with an ETA;
* a tqdm bar, when stderr (where the bar and the log lines go) is a terminal;
* otherwise a plain log line every :data:`PLAIN_INTERVAL_SECONDS` (``grmodel train ... >
  train.log 2>&1``), as the main job's console prints one for a training step.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from tqdm import tqdm

EVENTS_ENV = "GRMODEL_PROGRESS_EVENTS"
MARKER = "grmodel-progress "
# Seconds between two plain progress lines where the output is not a terminal.
PLAIN_INTERVAL_SECONDS = 120.0

log = logging.getLogger(__name__)


def events_enabled() -> bool:
    return os.environ.get(EVENTS_ENV, "") not in ("", "0")


def epoch_progress(model: str, total: int, epoch: int, epochs: int, done: int = 0,
                   bar: bool = True) -> Any:
    """The progress display of one epoch (module docstring): events, a bar or plain lines, or
    None with ``bar`` false (``train.progress=false``) and no runner reading events."""
    if events_enabled():
        return EpochEvents(model, total, epoch, epochs, done)
    if not bar:
        return None
    if not sys.stderr.isatty():
        return EpochLines(model, total, epoch, epochs, done)
    return tqdm(total=total, initial=done, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                leave=False)


class EpochEvents:
    """One epoch's progress, with the part of tqdm's interface the trainer uses."""

    def __init__(self, model: str, total: int, epoch: int, epochs: int, done: int = 0,
                 interval: float = 2.0) -> None:
        self.event = {"model": model, "epoch": epoch, "epochs": epochs, "batch": done,
                      "batches": total}
        self.interval = interval
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.event["batch"] += n
        if time.monotonic() - self.last >= self.interval:
            self._emit()

    def set_postfix(self, **values: Any) -> None:
        self.event.update(values)

    def close(self) -> None:
        self._emit()

    def _emit(self) -> None:
        self.last = time.monotonic()
        print(MARKER + json.dumps(self.event), file=sys.stdout, flush=True)


class EpochLines:
    """One epoch's progress as a log line every ``interval`` seconds (none for an epoch that
    ends sooner: its epoch line follows), with the part of tqdm's interface the trainer uses."""

    def __init__(self, model: str, total: int, epoch: int, epochs: int, done: int = 0,
                 interval: float = PLAIN_INTERVAL_SECONDS) -> None:
        self.label = f"{model} epoch {epoch + 1}/{epochs}"
        self.total, self.done, self.start_done = total, done, done
        self.interval = interval
        self.started = self.last = time.monotonic()
        self.postfix: dict[str, Any] = {}

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            log.info("%s", self.line(now))

    def set_postfix(self, **values: Any) -> None:
        self.postfix.update(values)

    def close(self) -> None:
        pass

    def line(self, now: float) -> str:
        """``gr epoch 1/3: 120/300 batches (40%), loss 1.2345, 2100 samples/s, ETA 1m30s``."""
        rate = (self.done - self.start_done) / max(now - self.started, 1e-9)
        parts = [f"{self.label}: {self.done}/{self.total} batches"
                 f" ({100 * self.done / max(self.total, 1):.0f}%)"]
        if "loss" in self.postfix:
            parts.append(f"loss {self.postfix['loss']}")
        if "sps" in self.postfix:
            parts.append(f"{self.postfix['sps']} samples/s")
        if rate > 0:
            parts.append(f"ETA {duration((self.total - self.done) / rate)}")
        return ", ".join(parts)


def duration(seconds: float) -> str:
    """A duration as a person reads it in a log: ``42.0 s``, ``3m05s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


def parse_event(line: str) -> dict[str, Any] | None:
    """The event in an output line (a runner may indent it), else None."""
    at = line.find(MARKER)
    if at < 0:
        return None
    try:
        event = json.loads(line[at + len(MARKER):])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None

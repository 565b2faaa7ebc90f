"""Training progress as event lines that a parent process reads (the local pipeline runner).

A pipeline step runs in a subprocess whose output is a pipe, where a terminal progress bar
would be one endless line. When ``GRMODEL_PROGRESS_EVENTS`` is set (the local runner sets it
for its steps), training writes ``grmodel-progress {json}`` lines to stdout instead: at most one
every ``interval`` seconds and one at each epoch end. The runner draws them as a bar with an ETA.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

EVENTS_ENV = "GRMODEL_PROGRESS_EVENTS"
MARKER = "grmodel-progress "


def events_enabled() -> bool:
    return os.environ.get(EVENTS_ENV, "") not in ("", "0")


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

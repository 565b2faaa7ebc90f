"""The one way a stage runs: its clock, its live MLflow run, its output directory and its record.

A stage is a plain function that makes a :class:`StageRun` first (the clock starts; the name is
given once), checks and reads its inputs, then writes inside ``with stage.output(out_dir) as
out:`` and ends with ``stage.record(...)``::

    stage = StageRun("ingest", tracking)
    config = ...  # argument checks: an error here opens no MLflow run and touches no output
    with stage.output(out_dir) as out:
        ...  # write into out
        stage.record(params={...}, metrics={...}, artifacts=[...])

``output`` opens the stage's MLflow run (FAILED if the block raises) and its output directory,
atomically replaced on success (``grmodel.atomic.atomic_directory``), so a failed stage leaves
no half-written output; ``atomic=False`` writes in place, for a report that must be kept when
the stage fails (the validation gate). ``record`` writes the :class:`StageRecord` into the
output and logs it to the live run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from grmodel.atomic import atomic_directory
from grmodel.pipeline.live import LiveRun, StageTracking, live_run
from grmodel.pipeline.stages.record import StageRecord


class StageRun:
    """One run of the stage ``name``: timed from its making to its record."""

    def __init__(self, name: str, tracking: StageTracking | None = None):
        self.name = name
        self.tracking = tracking
        self.started = time.time()  # Unix seconds: the record's and the MLflow run's start
        self.live = LiveRun()  # the stage's MLflow run, open inside ``output``
        self.dir: Path | None = None  # where the stage writes, inside ``output``
        self.recorded = False

    @contextmanager
    def output(self, out_dir: str | Path, *, atomic: bool = True) -> Iterator[Path]:
        """The directory to write into (a temporary sibling of ``out_dir`` when ``atomic``),
        inside the stage's live MLflow run. The block must call :meth:`record`."""
        with live_run(self.tracking, self.name, self.started) as live:
            self.live = live
            if atomic:
                with atomic_directory(out_dir) as tmp:
                    yield from self._inside(tmp)
            else:
                yield from self._inside(Path(out_dir))

    def _inside(self, directory: Path) -> Iterator[Path]:
        self.dir = directory
        yield directory
        if not self.recorded:  # every stage output holds its record
            raise RuntimeError(f"stage {self.name}: its block ended without StageRun.record")

    def record(self, *, params: dict[str, Any] | None = None,
               metrics: dict[str, float] | None = None,
               histories: dict[str, list[dict[str, Any]]] | None = None,
               artifacts: list[str] | None = None) -> StageRecord:
        """Write the stage's record into its output and log it to its live run."""
        if self.dir is None:
            raise RuntimeError(f"stage {self.name}: record is called inside StageRun.output")
        record = StageRecord(self.name, params=params or {}, metrics=metrics or {},
                             histories=histories or {}, artifacts=artifacts or [],
                             started=self.started, ended=time.time(),
                             mlflow_run_id=self.live.run_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        record.write(self.dir)
        self.live.log_record(record, self.dir)
        self.recorded = True
        return record

"""Day by day: consecutive generated days of logs, the local pipeline run as of each, one row
per day of what the run resolved and what the gate decided.

``simulate_days`` writes the days (``synth/days.py``, drift planted as asked) under
``out_dir/logs`` and runs the pipeline locally (``grmodel.pipeline.local.run_local``) in one
workdir, ``out_dir/runs`` (one MLflow store, so the registry's champion carries over), as of
every day that has ``window_days`` days before it. ``day_row`` reads a finished run's own
records: the fetch's data record, the processed manifest (window, rows, out-of-vocabulary
test rows), the generator's record of the test day (new ids, drifts in force), the drift
stage's verdict and the gate's decision. ``days.json`` holds the rows;
``days_report.py`` renders them (``days.md``, ``days.html``, ``days.png``) beside the runs.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from grmodel.atomic import write_json_atomic
from grmodel.data.kuairec.synth import DaysConfig, SynthConfig, generate_days
from grmodel.experiments.days_report import write_days_report
from grmodel.features import read_manifest
from grmodel.pipeline.local import LocalRun, local_tracking, run_local
from grmodel.pipeline.params import PipelineParams
from grmodel.pipeline.stages.record import StageRecord

log = logging.getLogger(__name__)

# The rows of a simulation, rewritten after each day (the report beside them: days_report.py).
ROWS_FILE = "days.json"


@dataclass
class DayRow:
    """What one day's run trained on and what became of its model."""

    as_of: str
    data_version: str
    partitions: int  # day partitions the run read (window and as_of)
    rows: dict[str, int]  # per split
    oov_test_rows: dict[str, int]  # test rows whose user / video the training days never saw
    drifts: list[str]  # planted drifts in force on the test day (the generator's record)
    challenger_mae: float | None
    champion_mae: float | None  # the previous champion on the same test day, when there was one
    verdict: str
    champion_after: str | None  # the registry version holding the champion alias afterwards
    drift: str = ""  # the check-drift stage's verdict: no reference, no drift or drift
    drifted: list[str] = field(default_factory=list)  # "split column" items it flagged
    champion_decay: float | None = None  # the champion's MAE today / at its promotion - 1
    decay_flagged: bool = False
    seconds: float = 0.0  # the run's wall time


def day_row(run: LocalRun) -> DayRow:
    """The row of a finished local run (its own records, nothing recomputed)."""
    fetched = StageRecord.read(run.output("fetch-data", "raw")).params["data"]
    processed = run.output("ingest", "processed")
    manifest = read_manifest(processed)
    test = manifest["splits"]["per_split"]["test"]
    drift = StageRecord.read(run.output("check-drift", "report")).params["drift"]
    decision = run.decision
    decay = decision.get("champion_decay") or {}
    metrics = decision.get("metrics") or {}
    promoted = decision["verdict"] == "promoted"
    return DayRow(
        as_of=(manifest.get("window") or {}).get("test_date", ""),
        data_version=fetched["data_version"],
        partitions=len(fetched.get("partitions") or {}),
        rows=dict(manifest["splits"]["rows"]),
        oov_test_rows={"users": test["oov_user_rows"], "videos": test["oov_item_rows"]},
        drifts=list((manifest.get("generator") or {}).get("drifts") or []),
        challenger_mae=(metrics.get("challenger") or {}).get("mae"),
        champion_mae=(metrics.get("champion") or {}).get("mae"),
        verdict=decision["verdict"],
        champion_after=(decision["challenger_version"] if promoted
                        else decision.get("champion_version")),
        drift=drift["verdict"],
        drifted=[f"{table.removesuffix('.parquet')} {column}"
                 for table, columns in (drift.get("drifted") or {}).items() for column in columns],
        champion_decay=decay.get("decay"),
        decay_flagged=bool(decay.get("flagged")),
        seconds=round(run.seconds, 1),
    )


def simulate_days(out_dir: str | Path, synth: SynthConfig, days: DaysConfig, window_days: int,
                  params: PipelineParams | None = None) -> list[DayRow]:
    """Generate the days, run the pipeline as of each day after the first ``window_days``,
    write ``days.json`` and the report (``days_report.write_days_report``) into ``out_dir``
    after every day; return the rows."""
    out = Path(out_dir)
    logs = out / "logs"
    generate_days(logs, synth, days)
    work = out / "runs"
    base = (params or PipelineParams()).with_values({
        "data_source": "logs", "data_repo": str(logs.resolve()), "data_version": "",
        "window_days": window_days, **local_tracking(work)})
    rows = []
    for day in days.dates()[window_days:]:
        log.info("day %s", day)
        run = run_local(base.with_values({"as_of": day.isoformat()}), work)
        rows.append(day_row(run))
        write_json_atomic(out / ROWS_FILE, [dataclasses.asdict(r) for r in rows])
        write_days_report(out, rows)
    return rows

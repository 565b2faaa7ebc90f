"""A stage's MLflow run while the stage runs: its real start and end, its curves as they come.

Kubeflow caches a stage on its inputs, so a stage cannot take the pipeline run's id (it differs
from run to run and would defeat the cache). A stage therefore opens its run in the experiment
on its own, tagged with its stage and data version, and writes the run's id into its
``StageRecord``; the register step then nests it under the pipeline run's parent
(``grmodel.pipeline.publish``). A stage whose tracking is unreachable runs all the same: its
record carries no run id, and the register step backfills the run from the record.

Tracking never fails a stage: an error while logging is reported once and ends the live run,
which then counts as not tracked (the register step backfills it).
"""

from __future__ import annotations

import base64
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from grmodel import __version__
from grmodel.redact import strip_credentials
from grmodel.tracking import (
    DATA_VERSION,
    PIPELINE_RUN_ID,
    RUN_KIND,
    STAGE,
    VERSION,
    commit_tags,
    connect,
    ensure_experiment,
    git_commit,
    log_artifacts,
    log_configs,
    log_history,
)

log = logging.getLogger(__name__)

TRACKED_TAG = "tracked"  # how a stage run was logged: live, backfilled or cached
LIVE, BACKFILLED, CACHED = "live", "backfilled", "cached"
_PROBE_SECONDS = 5.0


@dataclass(frozen=True)
class StageTracking:
    """Where a stage logs its run (the pipeline's MLflow settings) and the data it runs on."""

    uri: str = ""
    experiment: str = "grmodel"
    artifact_root: str = ""  # required by database URIs (sqlite:///...), optional for servers
    data_version: str = ""
    # Only for a stage that is never cached (fetch_data): its run is tagged with the pipeline
    # run's id, so the exit handler finds it even when the run failed before resolving its data.
    pipeline_run_id: str = ""


class LiveRun:
    """The stage's run, or nothing (``run_id`` empty) when tracking is off or unreachable."""

    def __init__(self, uri: str = "", run_id: str = ""):
        self.uri, self.run_id = uri, run_id

    def log_params(self, configs: dict[str, Any]) -> None:
        self._safely("params", lambda: log_configs(configs, run_id=self.run_id))

    def log_epoch(self, record: dict[str, Any], prefix: str = "") -> None:
        """One epoch's history record, timestamped now (as it ends)."""
        self._safely("an epoch", lambda: log_history([record], prefix=prefix, run_id=self.run_id))

    def log_record(self, record: Any, stage_dir: Path) -> None:
        """The stage's finished ``StageRecord``: params, metrics, duration and artifacts."""
        def log_all() -> None:
            client = connect(self.uri)
            log_configs(record.params, run_id=self.run_id)
            client.log_metric(self.run_id, "stage_seconds", max(record.ended - record.started, 0.0))
            for name, value in record.metrics.items():
                client.log_metric(self.run_id, name, float(value))
            if record.artifacts:
                log_artifacts([stage_dir / a for a in record.artifacts], run_id=self.run_id)

        self._safely("the stage record", log_all)

    def _safely(self, what: str, call: Any) -> None:
        if not self.run_id:
            return
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - tracking must never fail the stage
            log.warning("MLflow run %s: logging %s failed (%s); the register step will backfill"
                        " this stage from its record", self.run_id, what, exc)
            self._end("FAILED")
            self.run_id = ""

    def _end(self, status: str) -> None:
        try:
            connect(self.uri).set_terminated(self.run_id, status)
        except Exception as exc:  # noqa: BLE001
            log.warning("MLflow run %s: could not be ended (%s)", self.run_id, exc)


@contextmanager
def live_run(tracking: StageTracking | None, stage: str, started: float) -> Iterator[LiveRun]:
    """The stage's MLflow run, started when the stage did (``started``, Unix seconds), RUNNING
    inside the block, FINISHED after it, FAILED if it raises."""
    run = _start(tracking, stage, started) if tracking is not None and tracking.uri else LiveRun()
    try:
        yield run
    except BaseException:
        if run.run_id:
            run._end("FAILED")
        raise
    if run.run_id:
        run._end("FINISHED")


def _start(tracking: StageTracking, stage: str, started: float) -> LiveRun:
    reason = unreachable(tracking.uri)
    if reason:
        log.warning("MLflow %s is unreachable from this stage (%s): %s is tracked by the register"
                    " step from its record", tracking.uri, reason, stage)
        return LiveRun()
    try:
        experiment_id = ensure_experiment(tracking.uri, tracking.experiment,
                                          tracking.artifact_root or None)
        tags = {RUN_KIND: "stage", STAGE: stage, TRACKED_TAG: LIVE, **commit_tags(git_commit()),
                VERSION: __version__}
        if tracking.data_version:
            tags[DATA_VERSION] = tracking.data_version
        if tracking.pipeline_run_id:
            tags[PIPELINE_RUN_ID] = tracking.pipeline_run_id
        run = connect(tracking.uri).create_run(experiment_id, start_time=int(started * 1000),
                                               tags=tags, run_name=stage)
    except Exception as exc:  # noqa: BLE001 - tracking must never fail the stage
        log.warning("MLflow %s: cannot open a run for %s (%s); the register step will track it"
                    " from its record", tracking.uri, stage, exc)
        return LiveRun()
    return LiveRun(tracking.uri, run.info.run_id)


def unreachable(uri: str) -> str:
    """Why ``uri`` cannot be reached now ("" when it can): a server must answer /health within
    a few seconds (MLflow's own client would retry for minutes); a database file's directory
    must exist."""
    if uri.startswith(("http://", "https://")):
        # Credentials go in a header: left in the URL, urllib takes them for the host name.
        parts = urlsplit(uri)
        request = urllib.request.Request(f"{strip_credentials(uri).rstrip('/')}/health")  # noqa: S310
        if parts.username:
            login = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(login).decode())
        try:
            # The scheme is http(s), checked above.
            with urllib.request.urlopen(request, timeout=_PROBE_SECONDS):  # noqa: S310
                return ""
        except urllib.error.HTTPError:  # it answered (e.g. 401, or no /health): reachable
            return ""
        except OSError as exc:
            return str(exc)
    if uri.startswith("sqlite:///"):
        directory = Path(uri.removeprefix("sqlite:///")).parent
        return "" if directory.is_dir() else f"{directory} does not exist here"
    return ""

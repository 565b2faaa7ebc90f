"""The drift stage: the new processed dataset against the champion's training reference.

It runs after the processed validation and before training. The reference is the profile the
champion carries (``registry.champion_reference``); with no champion (a first run) the stage
records "no reference" and passes. The run's ``drift_policy`` decides what a drift does:
``warn`` reports it (console, MLflow, report) and the run goes on; ``stop`` fails the stage with
one line naming the drifted columns and the rule, and nothing downstream runs. Never cached: the
champion moves between runs on the same data.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from grmodel.pipeline.live import StageTracking, unreachable
from grmodel.pipeline.stages.record import StageError
from grmodel.pipeline.stages.runner import StageRun
from grmodel.redact import redact
from grmodel.registry import ChampionReference, champion_reference
from grmodel.validation.drift import DRIFT, DriftBounds, DriftReport, check_drift, check_policy

log = logging.getLogger(__name__)

DRIFT_STAGE = "check_drift"
REPORT_FILES = [f"{DriftReport.FILE_STEM}.{suffix}" for suffix in ("json", "md", "html")]


def drift_check(processed: str | Path, out_dir: str | Path, *, model_name: str,
                bounds: DriftBounds | None = None, policy: str = "warn",
                tracking: StageTracking | None = None) -> dict[str, Any]:
    """Compare ``processed`` with the reference of ``model_name``'s champion (found through
    ``tracking``'s MLflow); write drift.json/md/html into ``out_dir``; apply ``policy``."""
    stage = StageRun(DRIFT_STAGE, tracking)
    try:
        policy = check_policy(policy)
        bounds = bounds or DriftBounds()
    except ValueError as exc:
        raise StageError(str(exc)) from None
    # Written in place, not atomically: under "stop" the report is what the user reads next.
    with stage.output(out_dir, atomic=False) as out:
        reference = _reference(model_name, tracking)
        report = check_drift(processed, reference.profile, bounds, about=reference.about or None,
                             no_reference=reference.reason)
        report.write(out)
        stage.record(
            params={"drift": {"policy": policy, "verdict": report.verdict,
                              "drifted": report.drifted(), "model_name": model_name,
                              "reference": reference.about or {"none": reference.reason},
                              "bounds": bounds.to_dict()}},
            metrics=report.metrics(), artifacts=list(REPORT_FILES))
        if report.verdict == DRIFT:
            log.warning("%s (drift_policy=%s)", report.drift_line(), policy)
        report.apply_policy(policy)
    return {"verdict": report.verdict, "summary": report.summary(), "drifted": report.drifted(),
            "counts": report.counts()}


def _reference(model_name: str, tracking: StageTracking | None) -> ChampionReference:
    uri = tracking.uri if tracking else ""
    reason = unreachable(uri)
    if reason:
        raise StageError(f"MLflow {redact(uri)} is unreachable ({redact(reason)}) (rule: the drift"
                         " check reads the champion's reference from the registry; rerun once"
                         " the server is up)")
    return champion_reference(model_name, uri or None)


def drift_gate(processed: str | Path, report: Any, html_path: str | Path, metrics: Any, *,
               model_name: str, bounds: DriftBounds, policy: str,
               tracking: StageTracking | None = None) -> str:
    """What the drift component does around :func:`drift_check`: the HTML report to
    ``html_path`` (for the Kubeflow UI, even when the stage stops the run), the verdict and
    counts as KFP metrics and metadata; returns the summary line."""
    try:
        result = drift_check(processed, report.path, model_name=model_name, bounds=bounds,
                             policy=policy, tracking=tracking)
    finally:
        page = Path(report.path) / REPORT_FILES[2]
        if page.is_file():
            shutil.copyfile(page, html_path)
    report.metadata.update({"verdict": result["verdict"], "policy": policy})
    metrics.log_metric("drift_detected", float(result["verdict"] == DRIFT))
    for status, count in result["counts"].items():
        metrics.log_metric(f"drift_checks_{status}", count)
    return result["summary"]

"""The pipeline's MLflow picture when a run fails early (a sqlite store): the exit handler
names the parent with what the run resolved and puts the stage runs under it."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from grmodel.pipeline.live import StageTracking, live_run
from grmodel.pipeline.publish import TrackingTarget, close_tracking, decision_markdown
from grmodel.registry import Decision


@pytest.fixture
def target(tmp_path) -> TrackingTarget:
    return TrackingTarget(f"sqlite:///{tmp_path / 'mlflow.db'}", "run-42", "grmodel",
                          str(tmp_path / "artifacts"))


def _runs(target: TrackingTarget) -> dict[str, list]:
    client = MlflowClient(target.uri)
    experiment = client.get_experiment_by_name(target.experiment).experiment_id
    runs = client.search_runs([experiment])
    return {kind: [r for r in runs if r.data.tags.get("run_kind") == kind]
            for kind in ("pipeline", "stage")}


def test_a_run_that_failed_fetching_is_unresolved_with_its_fetch_under_it(target):
    """fetch_data failed before resolving a version (say a data_repo that is not there): the
    parent is `...-unresolved`, FAILED, and the failed fetch run is under it."""
    tracking = StageTracking(target.uri, target.experiment, target.artifact_root, "",
                             target.pipeline_run_id)
    with pytest.raises(ValueError, match="not a directory"), \
            live_run(tracking, "fetch_data", time.time()):
        raise ValueError("data source path: nowhere is not a directory")
    # A stage run of another pipeline run stays where it is.
    other = StageTracking(target.uri, target.experiment, target.artifact_root, "", "run-7")
    with live_run(other, "fetch_data", time.time()):
        pass
    close_tracking(target, "FAILED", "fetch-data failed")
    runs = _runs(target)
    (parent,) = runs["pipeline"]
    assert parent.info.run_name.endswith("-unresolved") and parent.info.status == "FAILED"
    assert parent.data.tags["pipeline_status"] == "FAILED"
    under = {r.data.tags.get("pipeline_run_id"): r.data.tags.get("mlflow.parentRunId")
             for r in runs["stage"]}
    assert under == {"run-42": parent.info.run_id, "run-7": None}


def test_stages_of_the_resolved_version_are_put_under_the_parent(target):
    """A later stage cannot take the run's id (its cache): the runs on the parent's data
    version since it started, under no run, are its own; a run still RUNNING was killed."""
    started = time.time()
    parent = target.parent("3f2a9c1b5e.dir", started=started)
    with live_run(StageTracking(target.uri, target.experiment, target.artifact_root,
                                "3f2a9c1b5e.dir"), "validate_raw", started + 1):
        pass
    killed = MlflowClient(target.uri).create_run(
        MlflowClient(target.uri).get_run(parent).info.experiment_id, start_time=int(started * 1000) + 2000,
        tags={"run_kind": "stage", "stage": "ingest", "data_version": "3f2a9c1b5e.dir"}).info.run_id
    close_tracking(target, "FAILED")
    runs = _runs(target)
    (closed,) = runs["pipeline"]
    assert closed.info.run_name.endswith("-3f2a9c1b") and closed.info.status == "FAILED"
    assert {r.data.tags["stage"]: (r.data.tags.get("mlflow.parentRunId"), r.info.status)
            for r in runs["stage"]} == {"validate_raw": (parent, "FINISHED"),
                                        "ingest": (parent, "KILLED")}
    assert killed in {r.info.run_id for r in runs["stage"]}


def test_the_decision_report_flags_a_decayed_champion():
    decision = Decision(
        model="m", challenger_version="3", champion_version="2", verdict="rejected", checks=[],
        metrics={"challenger": {"mae": 9.0, "xauc": 0.7}, "champion": {"mae": 10.9, "xauc": 0.7}},
        policy={}, data_version="v", decided_at="2026-01-02T03:04:05+00:00",
        champion_decay={"version": "2", "mae": 10.92, "mae_at_promotion": 7.01,
                        "promoted_at": "2026-01-01T03:04:05+00:00", "decay": 10.92 / 7.01 - 1,
                        "max_decay": 0.2, "flagged": True})
    text = decision_markdown(decision)
    assert "**Champion decay flagged.**" in text and "decay +55.8%, DECAYED beyond 20%" in text
    assert "+55.8% FLAGGED" in text  # the history table's decay column

"""Stages log their own MLflow runs while they run, against a real ``mlflow server`` on
127.0.0.1: the run lasts as long as the stage, its artifacts live in the server's store (not at
a path of the stage's machine), and the register step nests it under the pipeline's parent. A
stage that cannot reach tracking still runs, and is backfilled with its own start and end; a
stage served from Kubeflow's cache is logged as cached."""

from __future__ import annotations

import time

import pytest

from grmodel.pipeline.live import StageTracking
from grmodel.pipeline.publish import TrackingTarget, is_cache_hit, nest_stage_run
from grmodel.pipeline.stages.data import fetch_data, validate_data
from grmodel.pipeline.stages.record import StageRecord


@pytest.fixture(scope="module")
def server(tmp_path_factory, processes):
    proc, uri, log = processes.mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    processes.wait_http(proc, f"{uri}/health", log)
    yield uri
    processes.stop(proc)


def _fetch(out, tracking):
    fetch_data(out, source="generate", preset="tiny", data_seed=3, tracking=tracking)
    return StageRecord.read(out)


@pytest.fixture(scope="module")
def ran(server, tmp_path_factory):
    """Run 1: fetch and validate, tracked live. Then run 2's fetch, and a fetch whose tracking
    server does not answer."""
    root = tmp_path_factory.mktemp("stages")
    tracking = StageTracking(server, "live-test")
    first = _fetch(root / "fetch1", tracking)
    validate_data(root / "fetch1", "raw", root / "check1", tracking)
    time.sleep(0.05)
    second = _fetch(root / "fetch2", tracking)
    started = time.perf_counter()
    dead = StageTracking(f"http://127.0.0.1:{_closed_port()}", "live-test")
    offline = _fetch(root / "fetch3", dead)
    return {"root": root, "uri": server, "first": first, "second": second, "offline": offline,
            "offline_seconds": time.perf_counter() - started,
            "check": StageRecord.read(root / "check1")}


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


def test_a_stage_logs_its_run_while_it_runs(ran):
    from mlflow import MlflowClient

    client = MlflowClient(ran["uri"])
    check = ran["check"]
    run = client.get_run(check.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["tracked"] == "live"
    assert run.data.tags["stage"] == "validate_raw"
    assert run.info.start_time == int(check.started * 1000)
    assert run.info.end_time >= int(check.ended * 1000)
    assert run.data.metrics["checks_failed"] == 0
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # the server's store
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"validation.html"}


def test_unreachable_tracking_does_not_stop_a_stage(ran):
    offline = ran["offline"]
    assert offline.mlflow_run_id == "" and offline.params["data"]["data_version"]
    assert ran["offline_seconds"] < 30  # one probe, not MLflow's minutes of retries


def test_register_nests_live_runs_backfills_untracked_ones_and_marks_cache_hits(ran):
    from mlflow import MlflowClient

    uri, root = ran["uri"], ran["root"]
    client = MlflowClient(uri)
    target = TrackingTarget(uri, "kfp-run-2", "live-test", pipeline="grmodel-gr")
    second, check, offline = ran["second"], ran["check"], ran["offline"]
    parent = target.parent(second.params["data"]["data_version"], started=second.started)
    assert not is_cache_hit(second, second) and is_cache_hit(check, second)
    nest_stage_run(target, parent, second, root / "fetch2")
    nest_stage_run(target, parent, check, root / "check1", cached=is_cache_hit(check, second))
    nest_stage_run(target, parent, second, root / "fetch2")  # a retried register step
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent}'")
    by_how = {r.data.tags["tracked"]: r for r in children}
    assert sorted(by_how) == ["cached", "live"] and len(children) == 2
    assert by_how["live"].info.run_id == second.mlflow_run_id
    assert by_how["live"].data.tags["pipeline_run_id"] == "kfp-run-2"
    assert by_how["cached"].data.tags["cached_from_run"] == check.mlflow_run_id
    assert client.get_run(parent).info.run_name.startswith("grmodel-gr-")
    # A run whose fetch could not reach tracking: backfilled with the stage's own times.
    other = TrackingTarget(uri, "kfp-run-3", "live-test", pipeline="grmodel-gr")
    parent = other.parent(offline.params["data"]["data_version"], started=offline.started)
    nest_stage_run(other, parent, offline, root / "fetch3")
    (backfilled,) = client.search_runs([client.get_run(parent).info.experiment_id],
                                       f"tags.mlflow.parentRunId = '{parent}'")
    assert backfilled.data.tags["tracked"] == "backfilled"
    assert (backfilled.info.start_time, backfilled.info.end_time) == (
        int(offline.started * 1000), int(offline.ended * 1000))


def test_a_server_url_with_credentials_is_probed_at_its_host(server):
    """The login goes in a header: left in the URL, urllib took it for the host name, and every
    stage (and the register step) judged an authenticated server unreachable."""
    from grmodel.pipeline.live import unreachable

    with_login = server.replace("http://", "http://user:s3cret@", 1)
    assert unreachable(with_login) == ""
    down = unreachable("http://user:s3cret@127.0.0.1:9")
    assert "refused" in down.lower() and "s3cret" not in down

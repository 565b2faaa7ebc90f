"""Time-aware runs: the fetch resolves a window of logs by day when the run starts (its
partitions and their hashes recorded), the raw gate bounds the logs by that window, the ingest
trains on the window and tests on the as_of day; and (pytest -m long) the whole pipeline
through kfp.local on logs, then `grmodel reproduce` of that run from its MLflow record."""

from __future__ import annotations

import json

import pytest

from grmodel.data.windows import Window
from grmodel.pipeline.stages.data import (
    fetch_data,
    ingest,
    ingest_options,
    raw_bounds,
    raw_dir,
    run_window,
    validate_data,
)
from grmodel.pipeline.stages.record import StageError, StageRecord


def test_the_fetch_resolves_the_windows_partitions_and_records_their_hashes(tiny_days, tmp_path):
    fetched = fetch_data(tmp_path / "fetched", source="logs", data_repo=tiny_days.as_uri(),
                         as_of="2020-09-10", window_days=2)
    assert fetched["as_of"] == "2020-09-10" and fetched["obtained"] == "3 partitions"
    record = StageRecord.read(tmp_path / "fetched").params
    assert sorted(record["data"]["partitions"]) == ["2020-09-08", "2020-09-09", "2020-09-10"]
    assert all(len(p["sha256"]) == 64 for p in record["data"]["partitions"].values())
    assert record["window"] == Window.of("2020-09-10", 2).to_dict()
    assert fetched["data_version"] == record["data"]["data_version"]
    # The raw gate checks the logs against the window.
    assert raw_bounds(tmp_path / "fetched").first_day == "2020-09-08"
    gate = validate_data(tmp_path / "fetched", "raw", tmp_path / "raw-report")
    assert gate["success"] and gate["counts"]["failed"] == 0
    # The ingest trains on the window before as_of and tests on the as_of day.
    options = ingest_options("authors", "watch_time", fetched["as_of"], 2)
    ingest(tmp_path / "fetched", tmp_path / "processed", options)
    manifest = json.loads((tmp_path / "processed" / "manifest.json").read_text())
    assert manifest["window"]["test_date"] == "2020-09-10"
    assert manifest["window"]["train_dates"] == ["2020-09-08", "2020-09-08"]
    assert sorted(p.name for p in raw_dir(tmp_path / "fetched").iterdir()) == [
        "date=2020-09-08", "date=2020-09-09", "date=2020-09-10"]


def test_a_scheduled_run_is_as_of_the_day_before_its_scheduled_time():
    assert run_window("", 7, "2020-09-11T03:00:00Z") == Window.of("2020-09-10", 7)
    assert run_window("2020-09-05", 3, "2020-09-11T03:00:00Z").as_of.isoformat() == "2020-09-05"
    assert run_window("", 0, "2020-09-11T03:00:00Z") is None  # not windowed: today's behaviour


@pytest.mark.parametrize(("call", "message"), [
    (lambda p: fetch_data(p, source="logs", data_repo="/x"), "window_days is 0"),
    (lambda p: fetch_data(p, source="generate", preset="tiny", as_of="2020-09-10"),
     "with window_days 0"),
    (lambda p: fetch_data(p, source="generate", preset="tiny", window_days=1), "window_days=1"),
    (lambda p: ingest_options("random", "watch_time", "2020-09-10", 3), "split forward"),
])
def test_windows_that_cannot_run_are_refused_before_anything_is_written(tmp_path, call, message):
    with pytest.raises(StageError, match=message):
        call(tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.long
def test_a_local_run_on_logs_records_its_window_and_reproduces(tiny_days, tmp_path,
                                                               pipeline_overrides, capsys,
                                                               monkeypatch):
    """kfp.local, then `grmodel reproduce RUN_ID`: every metric equal (6 to 16 minutes here,
    with the machine shared)."""
    from mlflow import MlflowClient

    from grmodel.cli import main
    from grmodel.pipeline.local import local_tracking, run_local
    from grmodel.pipeline.params import PipelineParams

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    params = PipelineParams().with_values({
        "data_source": "logs", "data_repo": str(tiny_days), "as_of": "2020-09-10",
        "window_days": 3, "overrides": pipeline_overrides, "require_beats_baselines": [],
        **local_tracking(tmp_path)})
    run = run_local(params, tmp_path)
    client = MlflowClient(params.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("grmodel").experiment_id
    (parent,) = client.search_runs([experiment], "tags.run_kind = 'pipeline'")
    inputs = {d.dataset.name: d for d in parent.inputs.dataset_inputs}
    assert sorted(inputs) == ["kuairec-test", "kuairec-train", "kuairec-valid"]
    assert json.loads(inputs["kuairec-test"].dataset.profile)["dates"] == ["2020-09-10"] * 2
    assert [t.value for t in inputs["kuairec-train"].tags] == ["training"]
    manifest = json.loads((run.folder / "processed" / "manifest.json").read_text())
    assert manifest["window"]["as_of"] == "2020-09-10"
    capsys.readouterr()
    assert main(["reproduce", parent.info.run_id, "--tracking-uri", params.mlflow_tracking_uri,
                 "--workdir", str(tmp_path / "again")]) == 0
    report = capsys.readouterr().out
    assert "every partition's hash checked" in report and "metrics match exactly" in report

"""kfp.local runs that end early, and what a failed run tells its user: a failing validation
stops the run before anything is built or registered, with the README's exit status for bad
input. (tests/pipeline/test_local_run.py runs the whole pipeline; it is marked long.)"""

from __future__ import annotations

import io
import json
import re
import shutil
import sys

import pytest
from tiny_runs import local_params

from grmodel.cli import error_line
from grmodel.pipeline.local import (
    PipelineEnvironmentFailed,
    PipelineFailed,
    PipelineInputFailed,
    failure_kind,
    run_local,
)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # The component subprocesses inherit it: two cores, several processes.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_a_failing_validation_stops_the_run(tmp_path, pipeline_overrides):
    """Broken raw data: the raw gate fails; no vocabulary, no model, nothing registered."""
    from mlflow import MlflowClient

    from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec

    raw = tmp_path / "raw"
    generate_kuairec(raw, SynthConfig.preset("tiny", seed=3))
    matrix = raw / "small_matrix.csv"
    lines = matrix.read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("watch_ratio")
    broken = [lines[0]] + [",".join("-5" if i == column else v for i, v in enumerate(line.split(",")))
                           for line in lines[1:]]
    matrix.write_text("\n".join(broken) + "\n")
    params = local_params(tmp_path, pipeline_overrides, data_source="path", data_repo=str(raw),
                     snapshot_remote=str(tmp_path / "dvc-remote"))
    terminal = io.StringIO()
    with pytest.raises(PipelineFailed, match="validate-raw: ValidationFailed") as failed:
        run_local(params, tmp_path, terminal=terminal)
    assert re.search(r"✗ validate-raw .* failed: ValidationFailed: ", terminal.getvalue())
    # Bad input, not a bug: the README's exit status 1, and the rule says it is not retried.
    line, status = error_line("pipeline run", failed.value)
    assert isinstance(failed.value, PipelineInputFailed) and status == 1
    assert "internal error" not in line and "fails its step at once, without retries" in line
    run = next((tmp_path / "kfp").glob("grmodel-gr-*"))
    report = json.loads((run / "validate-raw" / "report" / "validation.json").read_text())
    assert not report["success"]
    assert not (run / "ingest").exists() and not (run / "build-vocab").exists()
    assert not list(run.glob("**/model.pt"))
    client = MlflowClient(params.mlflow_tracking_uri)
    assert client.search_registered_models() == []
    experiment = client.get_experiment_by_name("grmodel").experiment_id
    parents = client.search_runs([experiment], "tags.run_kind = 'pipeline'")
    assert [p.info.status for p in parents] == ["FAILED"]
    # Named with the data version fetch-data resolved, never "...-unknown".
    version = json.loads((run / "fetch-data" / "raw" / "stage.json").read_text())[
        "params"]["data"]["data_version"]
    assert parents[0].info.run_name.endswith("-" + version.removesuffix(".dir")[:8])
    # The stages that ran logged their runs live: the failed gate's run failed, with its report;
    # both are under the parent (no orphans), though the register step never ran.
    ran = {r.data.tags["stage"]: r for r in client.search_runs([experiment], "tags.run_kind = 'stage'")}
    assert {k: r.info.status for k, r in ran.items()} == {"fetch_data": "FINISHED",
                                                          "validate_raw": "FAILED"}
    assert {r.data.tags.get("mlflow.parentRunId") for r in ran.values()} == {parents[0].info.run_id}
    report = {a.path for a in client.list_artifacts(ran["validate_raw"].info.run_id)}
    assert "validation.html" in report
    shutil.rmtree(raw)



def test_a_failed_steps_error_says_what_kind_of_failure_it_is():
    """From the qualified name its traceback printed: bad input (exit 1), the environment
    (exit 3), or a bug (exit 70); unknown packages are never imported for it."""
    kinds = {
        "grmodel.validation.report.ValidationFailed": PipelineInputFailed,
        "grmodel.collapse.ModelCollapsed": PipelineInputFailed,
        "grmodel.features.DatasetError": PipelineInputFailed,
        "FileNotFoundError": PipelineInputFailed,
        "KeyError": PipelineInputFailed,
        "ConnectionRefusedError": PipelineEnvironmentFailed,
        "PermissionError": PipelineEnvironmentFailed,
        "RuntimeError": PipelineFailed,
        "AssertionError": PipelineFailed,
        "grmodel.no_such_module.Error": PipelineFailed,
        "not_imported_package.SomeError": PipelineFailed,
    }
    assert {name: failure_kind(name) for name in kinds} == kinds
    assert "not_imported_package" not in sys.modules
    statuses = {kind: error_line("pipeline run", kind("x"))[1] for kind in set(kinds.values())}
    assert statuses == {PipelineInputFailed: 1, PipelineEnvironmentFailed: 3, PipelineFailed: 70}

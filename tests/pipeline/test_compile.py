"""The compiled pipeline: the committed YAML is what the code compiles to, and it carries the
GPU, resource, retry, caching and image settings a cluster needs (no cluster runs here, so
these are checked in the IR that Kubeflow would receive)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from grmodel.k8s import images
from grmodel.pipeline.params import PipelineParams
from grmodel.pipeline.remote import COMPILED_PIPELINE, compile_pipeline, load_compiled


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(images.REGISTRY_ENV, raising=False)
        path = compile_pipeline(tmp_path_factory.mktemp("compiled") / "pipeline.yaml")
    spec, platform = load_compiled(path)
    return {"text": path.read_text(), "ir": spec, "platform": platform}


def test_the_committed_yaml_matches_the_code(compiled):
    assert COMPILED_PIPELINE.read_text() == compiled["text"], (
        "pipelines/grmodel_pipeline.yaml is stale: run `grmodel pipeline compile` and commit it")


def _tasks(ir: dict) -> dict:
    return ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]


def test_gr_trains_on_one_gpu(compiled):
    ir = compiled["ir"]
    container = ir["deploymentSpec"]["executors"]["exec-train-gr"]["container"]
    assert container["image"] == images.gpu_image()
    accelerator = container["resources"]["accelerator"]
    assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1"
    assert container["resources"]["resourceCpuRequest"] == "8"
    assert container["resources"]["resourceMemoryRequest"] == "32G"


def test_no_step_is_retried(compiled):
    """Kubeflow would retry a failed task whatever failed, and the failures of these steps are
    deterministic (a failed validation, a data error, a collapse): they fail the run at once."""
    ir = compiled["ir"]
    tasks = {**_tasks(ir), **ir["root"]["dag"]["tasks"]}
    tasks.update(ir["components"]["comp-for-loop-2"]["dag"]["tasks"])
    assert "train-baseline" in tasks and "register" in tasks and "fetch-data" in tasks
    assert {name: t["retryPolicy"] for name, t in tasks.items() if "retryPolicy" in t} == {}


def test_light_stages_run_the_runtime_image_without_gpus(compiled):
    executors = compiled["ir"]["deploymentSpec"]["executors"]
    for name, spec in executors.items():
        if name == "exec-train-gr":
            continue
        assert spec["container"]["image"] == images.runtime_image(), name
        assert "accelerator" not in spec["container"].get("resources", {}), name
        assert spec["container"]["resources"]["resourceCpuRequest"], name


def test_caching_is_on_for_pure_stages_and_off_where_runs_must_repeat(compiled):
    tasks = _tasks(compiled["ir"])
    for name in ("validate-raw", "ingest", "validate-processed", "build-vocab", "encode-labels",
                 "train-gr", "evaluate"):
        assert tasks[name]["cachingOptions"] == {"enableCache": True}, name
    # The drift check compares with the champion, which moves between runs on the same data.
    for name in ("fetch-data", "check-drift", "register"):
        assert not tasks[name]["cachingOptions"].get("enableCache"), name
    closing = compiled["ir"]["root"]["dag"]["tasks"]["close-tracking"]
    assert closing["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"


def test_every_stage_after_the_fetch_keys_its_cache_on_the_data_version(compiled):
    tasks = _tasks(compiled["ir"])
    for name, task in tasks.items():
        if name in ("fetch-data", "for-loop-2"):
            continue
        source = task["inputs"]["parameters"]["data_version"]["taskOutputParameter"]
        assert source == {"outputParameterKey": "data_version", "producerTask": "fetch-data"}, name
    # The ingest keys it on the fetch's resolved day too (a window over one data version).
    as_of = tasks["ingest"]["inputs"]["parameters"]["as_of"]["taskOutputParameter"]
    assert as_of == {"outputParameterKey": "as_of", "producerTask": "fetch-data"}


def test_the_fetch_gets_the_scheduled_time_and_nothing_pins_the_data(compiled):
    fetch = _tasks(compiled["ir"])["fetch-data"]["inputs"]["parameters"]
    assert fetch["scheduled_time"]["runtimeValue"]["constant"] == (
        "{{$.pipeline_job_schedule_time_utc}}")  # dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER
    declared = compiled["ir"]["root"]["inputDefinitions"]["parameters"]
    assert declared["data_version"]["defaultValue"] == "" and declared["as_of"]["defaultValue"] == ""


def test_pipeline_parameters_are_the_params_record(compiled):
    declared = compiled["ir"]["root"]["inputDefinitions"]["parameters"]
    defaults = PipelineParams()
    assert set(declared) == {f.name for f in dataclasses.fields(PipelineParams)}
    for name, spec in declared.items():
        assert spec["defaultValue"] == getattr(defaults, name), name


def test_compiling_writes_nothing_on_failure(tmp_path, monkeypatch):
    import kfp.compiler

    def broken(*args, **kwargs):
        raise RuntimeError("compiler failed")

    monkeypatch.setattr(kfp.compiler.Compiler, "compile", broken)
    with pytest.raises(RuntimeError):
        compile_pipeline(tmp_path / "out.yaml")
    assert list(Path(tmp_path).iterdir()) == []


def test_the_distributed_variant_mounts_the_shared_claim_on_the_gr_step(tmp_path):
    from grmodel.k8s.claim import DEFAULT_MOUNT

    spec, platform = load_compiled(compile_pipeline(tmp_path / "d.yaml", train_pvc="rwx"))
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert [name for name, e in executors.items() if "pvcMount" in e] == ["exec-train-gr"]
    assert executors["exec-train-gr"]["pvcMount"][0]["mountPath"] == DEFAULT_MOUNT
    task = _tasks(spec)["train-gr"]
    assert task["inputs"]["parameters"]["train_pvc"]["runtimeValue"]["constant"] == "rwx"


def test_every_step_reads_the_optional_credentials_secret(compiled):
    from pipelines.grmodel_pipeline import CREDENTIAL_KEYS, CREDENTIALS_SECRET

    executors = compiled["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(compiled["ir"]["deploymentSpec"]["executors"])
    for name, spec in executors.items():
        (secret,) = spec["secretAsEnv"]
        assert secret["secretNameParameter"]["runtimeValue"]["constant"] == CREDENTIALS_SECRET, name
        assert secret["optional"] is True, name
        assert [k["envVar"] for k in secret["keyToEnv"]] == list(CREDENTIAL_KEYS), name


def test_cached_stages_track_without_the_pipeline_run_id(compiled):
    """Every stage gets the MLflow settings to log its own run, but only the uncached register
    step takes the run id: an input that differs per run would make every cache lookup miss."""
    tasks = _tasks(compiled["ir"])
    loop = compiled["ir"]["components"]["comp-for-loop-2"]["dag"]["tasks"]
    for name, task in {**tasks, **loop}.items():
        if name == "for-loop-2":
            continue
        params = task["inputs"]["parameters"]
        assert {"tracking_uri", "mlflow_experiment", "mlflow_artifact_root"} <= set(params), name
        if task.get("cachingOptions", {}).get("enableCache"):
            assert "pipeline_run_id" not in params, name
    assert "pipeline_run_id" in tasks["register"]["inputs"]["parameters"]

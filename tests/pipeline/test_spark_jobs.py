"""The Spark variant of the data stages on a cluster, driven through a STAND-IN Spark Operator
(no Kubernetes cluster can run here): the stand-in takes the SparkApplication the stage
submits through the CustomObjectsApi calls a real API server gets, runs the application's own
command (its mainApplicationFile, mapped from the image's path to this checkout's copy, with
its arguments) as a local-mode Spark driver, and reports COMPLETED or FAILED in the status
the Spark Operator writes. To keep CI short the driver program runs in this process, on the
tests' shared local SparkSession (``main(arguments)``, as ``python spark_app.py arguments``
would: the test ``test_the_driver_program_runs_as_a_script`` runs it as a script once).
Tiny KuaiRec set (10k rows)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grmodel import sparkapp
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.features import read_manifest
from grmodel.pipeline import spark_app, spark_jobs
from grmodel.pipeline.stages.labels import VOCABULARY_FILE, build_vocab
from grmodel.pipeline.stages.record import STAGE_RECORD

pytestmark = pytest.mark.slow


class StandInSparkOperator:
    """A CustomObjectsApi with the Spark Operator behind it, in one process: ``create`` runs
    the driver program to completion (local mode), ``get`` returns the status it ended in."""

    def __init__(self) -> None:
        self.apps: dict[str, dict] = {}

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("sparkoperator.k8s.io", "v1beta2", "sparkapplications")
        spec = body["spec"]
        image_file = spec["mainApplicationFile"].removeprefix("local://")
        assert image_file == sparkapp.APP_FILE and spec["type"] == "Python"
        try:
            spark_app.main(spec["arguments"])
            state, message = "COMPLETED", ""
        except Exception as exc:  # the driver failed: the operator reports it, as here
            state, message = "FAILED", f"{type(exc).__name__}: {exc}"
        self.apps[body["metadata"]["name"]] = {
            **body, "status": {"applicationState": {"state": state, "errorMessage": message}}}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        return self.apps[name]


def test_spark_stages_run_as_spark_applications_through_a_stand_in_operator(spark, tmp_path: Path
                                                                            ) -> None:
    fetched = tmp_path / "fetched"
    generate_kuairec(fetched / "raw", SynthConfig.preset("tiny", seed=5))
    claim = tmp_path / "claim"  # the shared claim, mounted at the same path "in the pods"
    operator = StandInSparkOperator()
    job = {"mount_path": str(claim), "namespace": "team", "api": operator}
    spark_jobs.ingest(fetched, tmp_path / "processed", {"split": "random"}, None, "data-rwx", **job)
    spark_jobs.build_vocab(tmp_path / "processed", tmp_path / "vocab", [], None, "data-rwx", **job)
    spark_jobs.encode_labels(tmp_path / "processed", tmp_path / "vocab", tmp_path / "tokens", [],
                             None, "data-rwx", **job)

    assert len(operator.apps) == 3
    for app in operator.apps.values():
        spec = app["spec"]
        assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "data-rwx"
        assert spec["executor"]["instances"] >= 1 and spec["driver"]["securityContext"]["runAsNonRoot"]
    manifest = read_manifest(tmp_path / "processed")
    assert manifest["engine"]["name"] == "spark" and manifest["options"]["split"] == "random"
    # The stages the driver ran are the local ones: the same vocabulary as the pandas stage.
    build_vocab(tmp_path / "processed", tmp_path / "vocab-pandas")
    want = json.loads((tmp_path / "vocab-pandas" / VOCABULARY_FILE).read_text())
    assert json.loads((tmp_path / "vocab" / VOCABULARY_FILE).read_text()) == want
    record = json.loads((tmp_path / "tokens" / STAGE_RECORD).read_text())
    assert record["params"]["engine"] == "spark"
    assert record["params"]["tokens"]["rows"] == manifest["splits"]["rows"]["train"]


def test_the_driver_program_runs_as_a_script(tmp_path: Path) -> None:
    """The file the image's SparkApplication names runs as a script: its usage, no Spark."""
    done = subprocess.run([sys.executable, spark_app.__file__, "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "ingest" in done.stdout and "encode_labels" in done.stdout


def test_a_failed_application_is_one_error_naming_it(tmp_path: Path) -> None:
    class Failing(StandInSparkOperator):
        def create_namespaced_custom_object(self, group, version, namespace, plural, body):
            self.apps[body["metadata"]["name"]] = {**body, "status": {"applicationState": {
                "state": "FAILED", "errorMessage": "driver pod exited with code 1"}}}

    manifest = sparkapp.sparkapplication_manifest(
        ["ingest", "--raw", "/mnt/grmodel/x/raw", "--out", "/mnt/grmodel/x/out"], name="grmodel-ingest-x",
        namespace="team", pvc_claim="c", paths={"raw": "/mnt/grmodel/x/raw"})
    with pytest.raises(sparkapp.SparkApplicationError, match="failed: driver pod exited"):
        sparkapp.submit_and_wait(manifest, api=Failing(), sleep=lambda s: None)
    with pytest.raises(ValueError, match="not under the volume mount"):
        sparkapp.sparkapplication_manifest(["ingest"], name="grmodel-x", namespace="n",
                                           pvc_claim="c", paths={"raw": "/elsewhere"})


def test_object_storage_credentials_reach_the_pods_by_secret_name_only() -> None:
    manifest = sparkapp.sparkapplication_manifest(
        ["ingest", "--raw", "s3a://logs/kuairec/", "--out", "/mnt/grmodel/x/out"],
        name="grmodel-ingest-x", namespace="team", pvc_claim="c",
        paths={"out": "/mnt/grmodel/x/out"}, env_secret="s3-credentials")
    for role in ("driver", "executor"):
        assert manifest["spec"][role]["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    plain = sparkapp.sparkapplication_manifest(["ingest"], name="grmodel-x", namespace="n",
                                               pvc_claim="c", paths={})
    assert "envFrom" not in plain["spec"]["driver"]

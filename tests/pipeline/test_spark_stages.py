"""The Spark variant of the data stages on a cluster, driven through a STAND-IN Spark Operator
(no Kubernetes cluster can run here): the stand-in takes the SparkApplication the stage
submits through the CustomObjectsApi calls a real API server gets, runs the application's own
command (its mainApplicationFile, mapped from the image's path to this checkout's copy, with
its arguments) as a local-mode Spark driver, and reports COMPLETED or FAILED in the status
the Spark Operator writes. To keep CI short the driver program runs in this process, on the
tests' shared local SparkSession (``main(arguments)``, as ``python spark_driver.py arguments``
would: the test ``test_the_driver_program_runs_as_a_script`` runs it as a script once).
Tiny KuaiRec set (10k rows)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.features import read_manifest
from grmodel.k8s import sparkapplication
from grmodel.pipeline import spark_driver, spark_stages
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
        assert image_file == sparkapplication.APP_FILE and spec["type"] == "Python"
        try:
            spark_driver.main(spec["arguments"])
            state, message = "COMPLETED", ""
        except Exception as exc:  # the driver failed: the operator reports it, as here
            state, message = "FAILED", f"{type(exc).__name__}: {exc}"
        self.apps[body["metadata"]["name"]] = {
            **body, "status": {"applicationState": {"state": state, "errorMessage": message}}}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        return self.apps[name]


@pytest.mark.long
def test_spark_stages_run_as_spark_applications_through_a_stand_in_operator(spark, tmp_path: Path
                                                                            ) -> None:
    fetched = tmp_path / "fetched"
    generate_kuairec(fetched / "raw", SynthConfig.preset("tiny", seed=5))
    claim = tmp_path / "claim"  # the shared claim, mounted at the same path "in the pods"
    operator = StandInSparkOperator()
    job = {"mount_path": str(claim), "namespace": "team", "api": operator}
    spark_stages.ingest(fetched, tmp_path / "processed", {"split": "random"}, None, "data-rwx", **job)
    spark_stages.build_vocab(tmp_path / "processed", tmp_path / "vocab", [], None, "data-rwx", **job)
    spark_stages.encode_labels(tmp_path / "processed", tmp_path / "vocab", tmp_path / "tokens", [],
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
    done = subprocess.run([sys.executable, spark_driver.__file__, "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "ingest" in done.stdout and "encode_labels" in done.stdout

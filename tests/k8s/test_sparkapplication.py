"""The SparkApplication manifest of a Spark data stage, and waiting for it (no Kubernetes
cluster runs here: the API is a small in-memory stand-in; the stages themselves run through a
stand-in Spark Operator in tests/pipeline/test_spark_stages.py)."""

from __future__ import annotations

import pytest

from grmodel.k8s import sparkapplication


def test_a_failed_application_is_one_error_naming_it() -> None:
    class Failing:
        """The Spark Operator's status for an application whose driver pod failed."""

        def __init__(self) -> None:
            self.apps: dict[str, dict] = {}

        def create_namespaced_custom_object(self, group, version, namespace, plural, body):
            self.apps[body["metadata"]["name"]] = {**body, "status": {"applicationState": {
                "state": "FAILED", "errorMessage": "driver pod exited with code 1"}}}

        def get_namespaced_custom_object(self, group, version, namespace, plural, name):
            return self.apps[name]

    manifest = sparkapplication.sparkapplication_manifest(
        ["ingest", "--raw", "/mnt/grmodel/x/raw", "--out", "/mnt/grmodel/x/out"],
        name="grmodel-ingest-x", namespace="team", pvc_claim="c", paths={"raw": "/mnt/grmodel/x/raw"})
    with pytest.raises(sparkapplication.SparkApplicationError, match="failed: driver pod exited"):
        sparkapplication.submit_and_wait(manifest, api=Failing(), sleep=lambda s: None)
    with pytest.raises(ValueError, match="not under the volume mount"):
        sparkapplication.sparkapplication_manifest(["ingest"], name="grmodel-x", namespace="n",
                                                   pvc_claim="c", paths={"raw": "/elsewhere"})


def test_object_storage_credentials_reach_the_pods_by_secret_name_only() -> None:
    manifest = sparkapplication.sparkapplication_manifest(
        ["ingest", "--raw", "s3a://logs/kuairec/", "--out", "/mnt/grmodel/x/out"],
        name="grmodel-ingest-x", namespace="team", pvc_claim="c",
        paths={"out": "/mnt/grmodel/x/out"}, env_secret="s3-credentials")
    for role in ("driver", "executor"):
        assert manifest["spec"][role]["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    plain = sparkapplication.sparkapplication_manifest(["ingest"], name="grmodel-x", namespace="n",
                                                       pvc_claim="c", paths={})
    assert "envFrom" not in plain["spec"]["driver"]

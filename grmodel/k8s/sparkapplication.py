"""Spark stages on Kubernetes: a Kubeflow Spark Operator ``SparkApplication`` per stage.

With ``engine=spark`` and a shared claim, the pipeline's ingest, vocabulary and encode stages
do not run Spark in their own pod: each submits a ``sparkoperator.k8s.io/v1beta2``
SparkApplication (one driver, ``executors`` executor pods, all from the Spark image), waits for
it, and keeps what its driver wrote on the claim (grmodel/pipeline/spark_stages.py), as
grmodel/k8s/pytorchjob.py does for training.

* :func:`sparkapplication_manifest` builds the application. Its driver runs
  ``grmodel/pipeline/spark_driver.py`` (the image's installed copy) with the stage's arguments:
  the same stage functions as a local run, with ``engine="spark"``; options travel as JSON
  text, never pickles.
* Inputs and outputs live on one PersistentVolumeClaim, mounted in the driver and every
  executor (ReadWriteMany: executors write Parquet part files there).
* :func:`submit_and_wait` creates the application through the ``kubernetes`` client's
  ``CustomObjectsApi`` and polls ``status.applicationState.state`` until COMPLETED, a failure
  state or a timeout.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from grmodel.k8s import pods
from grmodel.k8s.claim import DEFAULT_MOUNT, SharedClaim
from grmodel.k8s.custom_objects import CustomObjectRun
from grmodel.k8s.images import spark_image

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
PLURAL = "sparkapplications"
KIND = "SparkApplication"
# The Spark the image holds (pyspark from requirements/dev.lock, docker/Dockerfile.spark).
SPARK_VERSION = "4.3.0"
# Where the image's virtualenv keeps the application file (docker/Dockerfile.spark).
APP_FILE = "/opt/venv/lib/python3.11/site-packages/grmodel/pipeline/spark_driver.py"
MAX_NAME = 50  # the driver pod is "<name>-driver"; executor pods add more
DONE = "COMPLETED"
FAILED = ("FAILED", "SUBMISSION_FAILED", "UNKNOWN")


class SparkApplicationError(RuntimeError):
    """An application that could not be created or failed."""


def arguments_digest(arguments: list[str]) -> str:
    return hashlib.sha256(json.dumps(arguments).encode()).hexdigest()[:16]


def sparkapplication_manifest(
    arguments: list[str],
    *,
    name: str,
    namespace: str,
    pvc_claim: str,
    paths: dict[str, str],
    mount_path: str = DEFAULT_MOUNT,
    image: str | None = None,
    executors: int = 2,
    executor_cores: int = 2,
    executor_memory: str = "4g",
    driver_cores: int = 1,
    driver_memory: str = "4g",
    service_account: str = "spark",
    run_as_user: int = pods.IMAGE_UID,
    spark_conf: dict[str, str] | None = None,
    env_secret: str | None = None,
) -> dict[str, Any]:
    """The SparkApplication that runs ``spark_driver.py <arguments>``. ``paths`` (label -> a path
    inside the pods) are checked to lie under ``mount_path``, where ``pvc_claim`` is mounted in
    the driver and every executor. ``env_secret``: a Kubernetes Secret whose keys become
    environment variables of the driver and executors, e.g. object-storage credentials
    (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, which pyarrow and Hadoop's s3a both read;
    a non-AWS endpoint: ``AWS_ENDPOINT_URL`` for pyarrow, ``spark.hadoop.fs.s3a.endpoint`` in
    ``spark_conf`` for s3a): the spec names the Secret, never its values."""
    pods.check_name(KIND, name, MAX_NAME)
    if executors < 1:
        raise ValueError(f"SparkApplication {name}: executors={executors} (rule: at least 1)")
    SharedClaim(pvc_claim, mount_path).check_paths(KIND, name, paths)
    labels = pods.pod_labels(arguments[0], {"grmodel/arguments-digest": arguments_digest(arguments)})
    mounts = [{"name": "data", "mountPath": mount_path}, {"name": "tmp", "mountPath": pods.POD_TMP}]
    # The operator's driver and executor securityContext is the container's.
    security = {**pods.container_security(), **pods.run_as(run_as_user)}
    pod = {"labels": labels, "annotations": dict(pods.ANNOTATIONS),
           "volumeMounts": mounts, "securityContext": security, "env": pods.pod_env(),
           **({"envFrom": [{"secretRef": {"name": env_secret}}]} if env_secret else {})}
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.local.dir": pods.POD_TMP,
        "spark.kubernetes.driver.request.cores": str(driver_cores),
        **(spark_conf or {}),
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": image or spark_image(),
            "imagePullPolicy": "IfNotPresent",
            "mainApplicationFile": f"local://{APP_FILE}",
            "arguments": list(arguments),
            "sparkVersion": SPARK_VERSION,
            "sparkConf": conf,
            "restartPolicy": {"type": "Never"},
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc_claim}},
                        {"name": "tmp", "emptyDir": {}}],
            "driver": {"cores": driver_cores, "memory": driver_memory,
                       "serviceAccount": service_account, **pod},
            "executor": {"instances": executors, "cores": executor_cores,
                         "memory": executor_memory, **pod},
        },
    }


def application_state(app: dict[str, Any]) -> tuple[str, str]:
    """(state, error message) of an application; PENDING before the operator reports one."""
    state = app.get("status", {}).get("applicationState", {}) or {}
    return str(state.get("state") or "PENDING"), str(state.get("errorMessage") or "")


# Created (or attached to) and waited for; `kubectl logs` of its driver on failure.
SPARKAPPLICATIONS = CustomObjectRun(
    (GROUP, VERSION, PLURAL), KIND, "grmodel/arguments-digest", SparkApplicationError,
    application_state, DONE, FAILED,
    lambda where, message, pods: (f"{where}: failed: {message or 'no message'}; see `kubectl logs"
                                  f" {pods}-driver`"),
    "one application name per stage input",
    timeout_s=12 * 3600, poll_s=15.0,
)
submit_and_wait = SPARKAPPLICATIONS.submit_and_wait

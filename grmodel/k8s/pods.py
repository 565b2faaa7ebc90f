"""What every pod grmodel creates carries, written once for PyTorchJob replicas and
SparkApplication drivers and executors alike: a non-root user, a read-only root filesystem, no
privileges, the same environment and labels; names Kubernetes accepts; the namespace."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

IMAGE_UID = 10001  # the non-root user of every image (docker/Dockerfile, .gpu, .spark)
POD_TMP = "/tmp"  # noqa: S108  (an emptyDir in the pods: the root filesystem is read-only)
NAME_RULE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# A service-mesh sidecar would keep finished pods running: the job would never end.
ANNOTATIONS = {"sidecar.istio.io/inject": "false"}
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "kubeflow"


def container_security() -> dict[str, Any]:
    """A container's security settings: no privilege escalation, no capabilities, a read-only
    root filesystem (writable paths are emptyDir volumes)."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def run_as(uid: int) -> dict[str, Any]:
    """Run as the images' non-root user and group."""
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid}


def pod_env() -> list[dict[str, str]]:
    """The environment of every container: a writable HOME, no MLflow telemetry."""
    return [{"name": "HOME", "value": POD_TMP}, {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"}]


def pod_labels(component: str, extra: dict[str, str]) -> dict[str, str]:
    return {"app.kubernetes.io/name": "grmodel", "app.kubernetes.io/component": component, **extra}


def check_name(kind: str, name: str, max_length: int) -> None:
    if len(name) > max_length or not NAME_RULE.match(name):
        raise ValueError(f"{kind} name {name!r}: rule: lowercase letters, digits and '-',"
                         f" starting with a letter, at most {max_length} characters")


def pod_namespace() -> str:
    """The namespace this pod runs in (a job goes beside it), else Kubeflow's default."""
    return NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.is_file() else DEFAULT_NAMESPACE

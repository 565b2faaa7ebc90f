"""Multi-replica training on Kubernetes: a Kubeflow PyTorchJob built from a :class:`RunConfig`.

With ``train_replicas > 1`` the pipeline's train stage does not train in its own pod: it
submits a ``kubeflow.org/v1`` PyTorchJob (the Kubeflow Training Operator runs one Master and
``replicas - 1`` Worker pods), waits for it, and collects the model directory the job wrote.

* :func:`pytorchjob_manifest` builds the job from the config. Every pod runs
  ``torchrun --nnodes=R --nproc_per_node=G ... -m grmodel.cli train --config-json <config>
  --resume``: the same ``grmodel train`` as a local run, the config passed as JSON text (never a
  pickle). The operator gives each pod ``MASTER_ADDR``, ``MASTER_PORT`` and ``RANK`` (the pod's
  index), which Kubernetes substitutes into the ``$(VAR)`` arguments.
* Data, the model directory and the resumable training state live on one PersistentVolumeClaim
  mounted in every pod. Across nodes it must be ReadWriteMany: every rank reads the training
  state when a pod restarts (``restartPolicy: OnFailure``), and ``--resume`` continues from it.
* :func:`submit_and_wait` creates the job through the ``kubernetes`` client's
  ``CustomObjectsApi`` and polls its status conditions until Succeeded, Failed or a timeout.
* :func:`run_pytorchjob` is the one call for a pipeline component: manifest, submit, wait, and
  check that the model directory exists; it returns that directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from grmodel.atomic import through_json
from grmodel.checkpoint import META_FILE, WEIGHTS_FILE
from grmodel.config import RunConfig
from grmodel.k8s import pods
from grmodel.k8s.claim import DEFAULT_MOUNT, SharedClaim
from grmodel.k8s.custom_objects import CustomObjectRun
from grmodel.k8s.images import gpu_image, runtime_image

GROUP = "kubeflow.org"
VERSION = "v1"
PLURAL = "pytorchjobs"
KIND = "PyTorchJob"
CONTAINER = "pytorch"  # the operator injects its variables into the container of this name
PORT_NAME = "pytorchjob-port"
PORT = 23456
MAX_NAME = 40  # pod names add "-worker-<index>" and must stay within 63 characters
POD_SHM = "/dev/shm"  # noqa: S108  (an emptyDir in the pods, for DataLoader workers and NCCL)


class PyTorchJobError(RuntimeError):
    """A job that could not be created, failed, or finished without its model directory."""


def config_digest(config: RunConfig) -> str:
    """A short hash of the config: job names and labels tell runs of different configs apart."""
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:16]


def pytorchjob_manifest(
    config: RunConfig,
    *,
    name: str,
    namespace: str,
    replicas: int,
    pvc_claim: str,
    data_dir: str,
    out_dir: str,
    state_dir: str | None = None,
    label_state_path: str | None = None,
    mount_path: str = DEFAULT_MOUNT,
    image: str | None = None,
    gpus_per_replica: int = 1,
    cpu: str = "8",
    memory: str = "32Gi",
    shm_size: str = "4Gi",
    run_as_user: int = pods.IMAGE_UID,
    backoff_limit: int = 3,
    active_deadline_s: int | None = None,
    service_account: str | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The PyTorchJob that trains ``config`` on ``replicas`` pods of ``gpus_per_replica`` GPUs
    each (0: CPU pods, one gloo process each).

    ``data_dir``, ``out_dir``, ``state_dir`` (default ``<out_dir>.state``) and
    ``label_state_path`` (a JSON label state from an earlier stage, e.g. GR's vocabulary;
    default: fitted by the job) are paths inside the pods, under ``mount_path`` where claim
    ``pvc_claim`` is mounted. ``image`` defaults to the CUDA training image (the CPU runtime
    image when ``gpus_per_replica`` is 0).
    """
    pods.check_name(KIND, name, MAX_NAME)
    if replicas < 1:
        raise ValueError(f"PyTorchJob {name}: replicas={replicas} (rule: at least 1)")
    if gpus_per_replica < 0:
        raise ValueError(f"PyTorchJob {name}: gpus_per_replica={gpus_per_replica} (rule: >= 0)")
    state_dir = state_dir or f"{out_dir.rstrip('/')}.state"
    paths = {"data_dir": data_dir, "out_dir": out_dir, "state_dir": state_dir,
             "label_state_path": label_state_path}
    SharedClaim(pvc_claim, mount_path).check_paths(KIND, name, paths)
    nproc = max(gpus_per_replica, 1)
    run_config = RunConfig.from_dict(config.to_dict())
    run_config.data.processed_dir = data_dir
    run_config.train.progress = False  # logs, not progress bars, in pods
    if gpus_per_replica == 0:
        run_config.train.device = "cpu"

    command = [
        "torchrun",
        f"--nnodes={replicas}",
        f"--nproc_per_node={nproc}",
        "--node_rank=$(RANK)",
        "--master_addr=$(MASTER_ADDR)",
        "--master_port=$(MASTER_PORT)",
        "-m", "grmodel.cli", "train",
        "--data", data_dir,
        "--out", out_dir,
        "--state-dir", state_dir,
        "--resume",
        *(["--label-state", label_state_path] if label_state_path else []),
        # "$$(" is Kubernetes' escape for a literal "$(" in arguments.
        "--config-json", run_config.to_json().replace("$(", "$$("),
    ]
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus_per_replica:
        limits["nvidia.com/gpu"] = gpus_per_replica
    threads = max(1, _cpu_count(cpu) // nproc)
    container = {
        "name": CONTAINER,
        "image": image or (gpu_image() if gpus_per_replica else runtime_image()),
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": "OMP_NUM_THREADS", "value": str(threads)}, *pods.pod_env()],
        "ports": [{"name": PORT_NAME, "containerPort": PORT}],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": limits},
        "securityContext": pods.container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": mount_path},
            {"name": "dshm", "mountPath": POD_SHM},  # DataLoader workers and NCCL use it
            {"name": "tmp", "mountPath": pods.POD_TMP},
        ],
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "securityContext": {**pods.run_as(run_as_user), "fsGroup": run_as_user,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": pvc_claim}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = list(tolerations)
    labels = pods.pod_labels("train", {"grmodel/model": config.model_name,
                                  "grmodel/config-digest": config_digest(config)})
    template = {"metadata": {"labels": labels, "annotations": dict(pods.ANNOTATIONS)}, "spec": pod_spec}
    specs: dict[str, Any] = {
        "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template},
    }
    if replicas > 1:
        specs["Worker"] = {"replicas": replicas - 1, "restartPolicy": "OnFailure",
                           "template": through_json(template)}
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": backoff_limit}
    if active_deadline_s is not None:
        run_policy["activeDeadlineSeconds"] = active_deadline_s
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"runPolicy": run_policy, "pytorchReplicaSpecs": specs},
    }


def job_state(job: dict[str, Any]) -> tuple[str, str]:
    """(state, reason) from a job's status: the latest true condition (Created, Running,
    Restarting, Succeeded, Failed), or Pending before the operator has reported any."""
    conditions = job.get("status", {}).get("conditions") or []
    true = [c for c in conditions if str(c.get("status")) == "True"]
    for final in ("Failed", "Succeeded"):  # a finished job keeps its earlier conditions
        for c in true:
            if c.get("type") == final:
                return final, _condition_reason(c)
    if not true:
        return "Pending", ""
    c = true[-1]
    return str(c.get("type")), _condition_reason(c)


# Created (or attached to) and waited for; `kubectl logs` of its first pod on failure.
PYTORCHJOBS = CustomObjectRun(
    (GROUP, VERSION, PLURAL), KIND, "grmodel/config-digest", PyTorchJobError, job_state,
    "Succeeded", ("Failed",),
    lambda where, reason, pods: (f"{where} failed: {reason or 'no reason given'}; see `kubectl"
                                 f" logs {pods}-master-0`"),
    "one job name per config; delete it or choose another name",
    timeout_s=24 * 3600, poll_s=30.0,
)
submit_and_wait = PYTORCHJOBS.submit_and_wait


def run_pytorchjob(
    config: RunConfig,
    *,
    replicas: int,
    pvc_claim: str,
    data_dir: str,
    out_dir: str,
    namespace: str = pods.DEFAULT_NAMESPACE,
    name: str | None = None,
    local_mount: str | Path | None = None,
    timeout_s: float = 24 * 3600,
    poll_s: float = 30.0,
    api: Any = None,
    **manifest_options: Any,
) -> Path:
    """Train ``config`` as a PyTorchJob and return the model directory it wrote.

    ``data_dir`` / ``out_dir`` are paths inside the job's pods (under ``mount_path``, default
    :data:`DEFAULT_MOUNT`). The caller must see the same claim: ``local_mount`` is where it is
    mounted here (default: the same ``mount_path``). Other keywords go to
    :func:`pytorchjob_manifest` (``gpus_per_replica``, ``image``, ``cpu``, ``memory``, ...).
    """
    name = name or f"grmodel-{config.model_name}-{config_digest(config)[:10]}"
    manifest = pytorchjob_manifest(config, name=name, namespace=namespace, replicas=replicas,
                                   pvc_claim=pvc_claim, data_dir=data_dir, out_dir=out_dir,
                                   **manifest_options)
    submit_and_wait(manifest, timeout_s=timeout_s, poll_s=poll_s, api=api)
    claim = SharedClaim(pvc_claim, manifest_options.get("mount_path", DEFAULT_MOUNT),
                        Path(local_mount) if local_mount else None)
    model_dir = claim.local(out_dir)
    missing = [f for f in (WEIGHTS_FILE, META_FILE) if not (model_dir / f).is_file()]
    if missing:
        raise PyTorchJobError(f"PyTorchJob {namespace}/{name} succeeded but {model_dir} lacks"
                              f" {missing} (rule: the job writes its model to out_dir on the claim)")
    return model_dir


def _cpu_count(cpu: str) -> int:
    """Whole CPUs in a Kubernetes quantity ("8", "500m" -> 0)."""
    text = str(cpu)
    return int(text[:-1]) // 1000 if text.endswith("m") else int(float(text))


def _condition_reason(c: dict[str, Any]) -> str:
    return ": ".join(str(c[k]) for k in ("reason", "message") if c.get(k))

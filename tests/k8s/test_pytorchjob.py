"""The PyTorchJob manifest built from a config, and submitting / waiting for a job.

No Kubernetes cluster (nor Training Operator) can run here, so the Kubernetes API is faked: a
small in-memory CustomObjectsApi that plays the operator's status conditions back. The
manifest itself is checked field by field against what the operator and ``grmodel train``
expect, including that its command line parses and rebuilds the very same config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grmodel.cli import build_parser
from grmodel.config import RunConfig
from grmodel.k8s.images import gpu_image, runtime_image
from grmodel.k8s.pytorchjob import (
    GROUP,
    PLURAL,
    VERSION,
    PyTorchJobError,
    config_digest,
    job_state,
    pytorchjob_manifest,
    run_pytorchjob,
    submit_and_wait,
)

MOUNT = "/mnt/grmodel"


def manifest(replicas: int = 3, gpus: int = 2, **kwargs):
    config = RunConfig().with_overrides(["train.epochs=7", "train.streaming=true"])
    options = {"name": "gr-train", "namespace": "ml", "replicas": replicas, "pvc_claim": "grmodel-rwx",
               "data_dir": f"{MOUNT}/data/processed", "out_dir": f"{MOUNT}/runs/gr",
               "gpus_per_replica": gpus, **kwargs}
    return config, pytorchjob_manifest(config, **options)


def container(job, role="Master"):
    return job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"][0]


def test_manifest_replicas_resources_image_and_security():
    config, job = manifest()
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert job["metadata"]["labels"]["grmodel/config-digest"] == config_digest(config)
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 2
    for role in ("Master", "Worker"):
        spec = specs[role]
        assert spec["restartPolicy"] == "OnFailure"
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        c = container(job, role)
        assert c["name"] == "pytorch"  # the operator's container name
        assert c["image"] == gpu_image()
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 2
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "pytorchjob-port", "containerPort": 23456} in c["ports"]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                  if "persistentVolumeClaim" in v]
        assert claims == ["grmodel-rwx"]
        assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    _, cpu_job = manifest(replicas=1, gpus=0)
    assert "Worker" not in cpu_job["spec"]["pytorchReplicaSpecs"]
    assert container(cpu_job)["image"] == runtime_image()
    assert "nvidia.com/gpu" not in container(cpu_job)["resources"]["limits"]


def test_manifest_command_is_torchrun_grmodel_train_with_the_config_as_json():
    config, job = manifest()
    command = container(job)["command"]
    launcher, train = command[: command.index("-m")], command[command.index("-m") + 2:]
    assert launcher == ["torchrun", "--nnodes=3", "--nproc_per_node=2", "--node_rank=$(RANK)",
                        "--master_addr=$(MASTER_ADDR)", "--master_port=$(MASTER_PORT)"]
    assert command[command.index("-m") + 1] == "grmodel.cli"
    args = build_parser().parse_args(train)
    assert (args.command, args.data, args.out, args.resume) == (
        "train", f"{MOUNT}/data/processed", f"{MOUNT}/runs/gr", True)
    assert args.state_dir == f"{MOUNT}/runs/gr.state" and args.label_state is None
    _, with_vocab = manifest(label_state_path=f"{MOUNT}/vocab/label_state.json")
    command = container(with_vocab)["command"]
    parsed = build_parser().parse_args(command[command.index("-m") + 2:])
    assert parsed.label_state == f"{MOUNT}/vocab/label_state.json"
    sent = RunConfig.from_dict(json.loads(args.config_json))
    assert sent.train.epochs == 7 and sent.train.streaming is True
    assert sent.data.processed_dir == f"{MOUNT}/data/processed"
    assert sent.model == config.model and sent.vocab == config.vocab
    assert "pickle" not in json.dumps(job)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"name": "Bad_Name"}, "lowercase"), ({"replicas": 0}, "replicas=0"),
     ({"out_dir": "/elsewhere/gr"}, "not under the volume mount")],
)
def test_manifest_rejects_bad_settings_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        manifest(**kwargs)


class FakeCustomObjects:
    """The calls of kubernetes.client.CustomObjectsApi that grmodel uses; each get returns the
    next status in ``statuses`` (the operator's progress), the last one forever."""

    def __init__(self, statuses, existing=None):
        self.statuses = list(statuses)
        self.jobs = dict(existing or {})
        self.created, self.deleted = [], []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == (GROUP, VERSION, PLURAL)
        name = body["metadata"]["name"]
        if name in self.jobs:
            error = RuntimeError("Conflict")
            error.status, error.reason = 409, "AlreadyExists"
            raise error
        self.jobs[name] = body
        self.created.append(name)
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {**self.jobs[name], "status": status}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.deleted.append(name)


def cond(*types, **last):
    return {"conditions": [{"type": t, "status": "True", **(last if i == len(types) - 1 else {})}
                           for i, t in enumerate(types)]}


def test_submit_and_wait_follows_the_conditions_to_success():
    _, job = manifest()
    api = FakeCustomObjects([{}, cond("Created"), cond("Created", "Running"),
                             cond("Created", "Running", "Succeeded")])
    sleeps = []
    done = submit_and_wait(job, api=api, poll_s=5, sleep=sleeps.append)
    assert api.created == ["gr-train"] and job_state(done)[0] == "Succeeded"
    assert sleeps == [5, 5, 5]


def test_failed_job_raises_its_reason():
    _, job = manifest()
    api = FakeCustomObjects([cond("Created", "Running", "Failed", reason="BackoffLimitExceeded",
                                  message="pod gr-train-worker-0 OOMKilled")])
    with pytest.raises(PyTorchJobError, match="BackoffLimitExceeded: pod gr-train-worker-0 OOMKilled"):
        submit_and_wait(job, api=api, sleep=lambda s: None)


def test_timeout_deletes_the_job():
    _, job = manifest()
    api = FakeCustomObjects([cond("Created", "Running")])
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(TimeoutError, match="not finished after 30 s"):
        submit_and_wait(job, api=api, timeout_s=30, poll_s=10, sleep=lambda s: None,
                        clock=lambda: next(ticks))
    assert api.deleted == ["gr-train"]


def test_existing_job_of_the_same_config_is_awaited_another_is_refused():
    _, job = manifest()
    api = FakeCustomObjects([cond("Succeeded")], existing={"gr-train": job})
    submit_and_wait(job, api=api, sleep=lambda s: None)
    assert api.created == []
    other = json.loads(json.dumps(job))
    other["metadata"]["labels"]["grmodel/config-digest"] = "0" * 16
    api = FakeCustomObjects([cond("Succeeded")], existing={"gr-train": other})
    with pytest.raises(PyTorchJobError, match="another config"):
        submit_and_wait(job, api=api, sleep=lambda s: None)


def test_run_pytorchjob_returns_the_model_directory_the_job_wrote(tmp_path: Path):
    config = RunConfig()
    api = FakeCustomObjects([cond("Created", "Running", "Succeeded")])
    kwargs = {"replicas": 2, "pvc_claim": "c", "data_dir": f"{MOUNT}/data", "out_dir": f"{MOUNT}/m",
              "local_mount": tmp_path, "api": api, "poll_s": 0}
    with pytest.raises(PyTorchJobError, match="lacks"):
        run_pytorchjob(config, **kwargs)
    (tmp_path / "m").mkdir()
    for name in ("model.pt", "checkpoint.json"):
        (tmp_path / "m" / name).write_text("x")
    api.jobs.clear()
    assert run_pytorchjob(config, **kwargs) == tmp_path / "m"
    assert api.created == [f"grmodel-gr-{config_digest(config)[:10]}"] * 2

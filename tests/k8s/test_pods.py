"""What every pod grmodel starts carries, and the shared claim its inputs are copied onto."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grmodel.config import RunConfig
from grmodel.k8s.claim import SharedClaim
from grmodel.k8s.pods import IMAGE_UID, check_name
from grmodel.k8s.pytorchjob import pytorchjob_manifest
from grmodel.k8s.sparkapplication import sparkapplication_manifest

HARDENED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}
NON_ROOT = {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID}


def test_every_pod_runs_hardened_as_the_images_non_root_user():
    job = pytorchjob_manifest(RunConfig(), name="gr", namespace="ml", replicas=2, pvc_claim="c",
                              data_dir="/mnt/grmodel/d", out_dir="/mnt/grmodel/o")
    app = sparkapplication_manifest(["ingest"], name="grmodel-ingest", namespace="ml",
                                    pvc_claim="c", paths={"out": "/mnt/grmodel/o"})
    for role in job["spec"]["pytorchReplicaSpecs"].values():
        pod = role["template"]["spec"]
        assert pod["containers"][0]["securityContext"] == HARDENED
        assert pod["securityContext"].items() >= NON_ROOT.items()
        assert role["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    for role in ("driver", "executor"):
        pod = app["spec"][role]
        assert pod["securityContext"] == {**HARDENED, **NON_ROOT}  # the container's context
        assert pod["annotations"] == {"sidecar.istio.io/inject": "false"}
    env = {e["name"]: e["value"] for e in job["spec"]["pytorchReplicaSpecs"]["Master"]["template"][
        "spec"]["containers"][0]["env"]}
    assert {e["name"]: e["value"] for e in app["spec"]["driver"]["env"]}.items() <= env.items()


def test_names_and_paths_kubernetes_and_the_claim_refuse():
    with pytest.raises(ValueError, match="PyTorchJob name 'Gr_1': rule: lowercase"):
        check_name("PyTorchJob", "Gr_1", 40)
    with pytest.raises(ValueError, match="at most 5 characters"):
        check_name("SparkApplication", "grmodel", 5)
    with pytest.raises(ValueError, match=r"out='/data/o' is not under the volume mount '/mnt/g'"):
        SharedClaim("c", "/mnt/g").check_paths("PyTorchJob", "gr", {"out": "/data/o", "x": None})


def test_inputs_are_copied_onto_the_claim_once_and_whole(tmp_path: Path):
    source = tmp_path / "processed"
    source.mkdir()
    (source / "train.parquet").write_text("rows")
    claim = SharedClaim("c", "/mnt/g", tmp_path / "here")
    assert claim.stage("job-1", {"processed": source}) == {"processed": "/mnt/g/job-1/processed"}
    copied = claim.local("/mnt/g/job-1/processed")
    assert copied == tmp_path / "here" / "job-1" / "processed"
    assert (copied / "train.parquet").read_text() == "rows"
    (source / "train.parquet").write_text("other rows")  # the job dir names what it holds
    claim.stage("job-1", {"processed": source})
    assert (copied / "train.parquet").read_text() == "rows"
    (tmp_path / "unreadable").mkdir()
    (tmp_path / "unreadable" / "link").symlink_to(tmp_path / "missing")  # a copy that fails
    with pytest.raises(shutil.Error, match="No such file"):
        claim.stage("job-2", {"processed": tmp_path / "unreadable"})
    assert sorted(p.name for p in (tmp_path / "here" / "job-2").iterdir()) == []  # nothing half-copied
    options = {"mount_path": "/mnt/x", "local_mount": str(tmp_path), "namespace": "ml"}
    assert SharedClaim.from_options("c", options) == SharedClaim("c", "/mnt/x", tmp_path)
    assert options == {"namespace": "ml"}

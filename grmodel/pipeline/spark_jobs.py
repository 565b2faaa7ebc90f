"""The data stages as SparkApplications: stage the inputs on the shared claim, run the stage's
driver program (grmodel/pipeline/spark_app.py) on the Spark Operator, and keep what it wrote
as the step's output, tracked like a stage that ran in the step's own pod.

Each call takes ``pvc_claim`` (a ReadWriteMany claim the step mounts too) and job options:
``mount_path`` (in the pods), ``local_mount`` (here; default the same), ``namespace``, ``api``
(a ``CustomObjectsApi``) and any keyword of ``sparkapp.sparkapplication_manifest``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from grmodel import sparkapp
from grmodel.pipeline.live import StageTracking
from grmodel.pipeline.stages.data import raw_dir
from grmodel.pipeline.stages.record import StageRecord
from grmodel.pipeline.stages.runner import StageRun
from grmodel.pipeline.stages.train import pod_namespace
from grmodel.pytorchjob import DEFAULT_MOUNT


def ingest(fetched_dir: str | Path, out_dir: str | Path, options: dict[str, Any] | None,
           tracking: StageTracking | None, pvc_claim: str, **job: Any) -> dict[str, Any]:
    record = _run("ingest", {"raw": raw_dir(fetched_dir)}, out_dir,
                  ["--options", json.dumps(options or {})], tracking, pvc_claim, job)
    return {"rows": record.metrics, "label": json.loads(
        (Path(out_dir) / "manifest.json").read_text()).get("label")}


def build_vocab(processed: str | Path, out_dir: str | Path, overrides: list[str] | None,
                tracking: StageTracking | None, pvc_claim: str, **job: Any) -> dict[str, Any]:
    record = _run("build_vocab", {"processed": Path(processed)}, out_dir,
                  ["--overrides", json.dumps(overrides or [])], tracking, pvc_claim, job)
    return {"vocab_size": int(record.metrics["vocab_size"]),
            "max_decode_len": int(record.metrics["max_decode_len"])}


def encode_labels(processed: str | Path, vocab_dir: str | Path, out_dir: str | Path,
                  overrides: list[str] | None, tracking: StageTracking | None, pvc_claim: str,
                  **job: Any) -> dict[str, Any]:
    record = _run("encode_labels", {"processed": Path(processed), "vocabulary": Path(vocab_dir)},
                  out_dir, ["--overrides", json.dumps(overrides or [])], tracking, pvc_claim, job)
    return {"rows": int(record.params["tokens"]["rows"]),
            "mean_length": record.metrics["mean_length"]}


def _run(stage: str, inputs: dict[str, Path], out_dir: str | Path, extra: list[str],
         tracking: StageTracking | None, pvc_claim: str, job: dict[str, Any]) -> StageRecord:
    run = StageRun(stage, tracking)
    job = dict(job)
    pod_mount = job.pop("mount_path", DEFAULT_MOUNT)
    here = Path(job.pop("local_mount", None) or pod_mount)
    namespace = job.pop("namespace", None) or pod_namespace()
    api = job.pop("api", None)
    arguments = [stage, *[a for label, path in inputs.items() for a in (f"--{label}", str(path))],
                 *extra]
    digest = sparkapp.arguments_digest(arguments)
    job_dir = f"grmodel-spark/{stage}-{digest}"
    pod = f"{pod_mount}/{job_dir}"
    for label, path in inputs.items():  # the claim is what the driver and executors all see
        if not (here / job_dir / label).exists():
            shutil.copytree(path, here / job_dir / label)
    pod_arguments = [stage, *[a for label in inputs for a in (f"--{label}", f"{pod}/{label}")],
                     "--out", f"{pod}/out", *extra]
    name = f"grmodel-{stage.replace('_', '-')}-{digest[:10]}"
    manifest = sparkapp.sparkapplication_manifest(
        pod_arguments, name=name, namespace=namespace, pvc_claim=pvc_claim,
        paths={label: f"{pod}/{label}" for label in [*inputs, "out"]}, mount_path=pod_mount, **job)
    sparkapp.submit_and_wait(manifest, api=api)
    written = here / job_dir / "out"
    driver = StageRecord.read(written)  # what the driver ran: its params, metrics and files
    with run.output(out_dir) as out:
        shutil.copytree(written, out, dirs_exist_ok=True)
        # The record of this step, which timed the whole application and holds its MLflow run.
        return run.record(params=driver.params, metrics=driver.metrics,
                          histories=driver.histories, artifacts=driver.artifacts)

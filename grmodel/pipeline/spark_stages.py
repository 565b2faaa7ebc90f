"""The data stages as SparkApplications: stage the inputs on the shared claim, run the stage's
driver program (grmodel/pipeline/spark_driver.py) on the Spark Operator, and keep what it wrote
as the step's output, tracked like a stage that ran in the step's own pod.

Each call takes ``pvc_claim`` (a ReadWriteMany claim the step mounts too) and job options:
``mount_path`` (in the pods), ``local_mount`` (here; default the same), ``namespace``, ``api``
(a ``CustomObjectsApi``) and any keyword of ``sparkapplication.sparkapplication_manifest``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from grmodel.k8s import sparkapplication
from grmodel.k8s.claim import SharedClaim
from grmodel.k8s.pods import pod_namespace
from grmodel.pipeline.live import StageTracking
from grmodel.pipeline.stages.data import raw_dir
from grmodel.pipeline.stages.record import StageRecord
from grmodel.pipeline.stages.runner import StageRun


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
    claim = SharedClaim.from_options(pvc_claim, job)
    namespace = job.pop("namespace", None) or pod_namespace()
    api = job.pop("api", None)
    arguments = [stage, *[a for label, path in inputs.items() for a in (f"--{label}", str(path))],
                 *extra]
    digest = sparkapplication.arguments_digest(arguments)
    job_dir = f"grmodel-spark/{stage}-{digest}"
    # The claim is what the driver and executors all see.
    paths = {**claim.stage(job_dir, inputs), "out": claim.in_pods(f"{job_dir}/out")}
    pod_arguments = [stage, *[a for label in inputs for a in (f"--{label}", paths[label])],
                     "--out", paths["out"], *extra]
    name = f"grmodel-{stage.replace('_', '-')}-{digest[:10]}"
    manifest = sparkapplication.sparkapplication_manifest(
        pod_arguments, name=name, namespace=namespace, pvc_claim=claim.name, paths=paths,
        mount_path=claim.mount_path, **job)
    sparkapplication.submit_and_wait(manifest, api=api)
    written = claim.local(paths["out"])
    driver = StageRecord.read(written)  # what the driver ran: its params, metrics and files
    with run.output(out_dir) as out:
        shutil.copytree(written, out, dirs_exist_ok=True)
        # The record of this step, which timed the whole application and holds its MLflow run.
        return run.record(params=driver.params, metrics=driver.metrics,
                          histories=driver.histories, artifacts=driver.artifacts)

"""The training stage: each model for each seed, in this pod or (GR) as a Kubeflow PyTorchJob."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from grmodel.atomic import write_json_atomic
from grmodel.checkpoint import META_FILE
from grmodel.features import read_labels
from grmodel.k8s import pytorchjob
from grmodel.k8s.claim import SharedClaim
from grmodel.k8s.pods import pod_namespace
from grmodel.pipeline.live import StageTracking
from grmodel.pipeline.stages.labels import read_tokens, read_vocabulary
from grmodel.pipeline.stages.plan import GR, model_plan
from grmodel.pipeline.stages.record import StageError
from grmodel.pipeline.stages.runner import StageRun
from grmodel.tracking import EPOCH_TIME
from grmodel.training.loop import train_or_resume
from grmodel.training.records import TrainResult, dataset_fingerprint, write_training_record

log = logging.getLogger(__name__)

LABEL_STATE_FILE = "label_state.json"  # a model's label state alone (what --label-state reads)


def train(
    processed: str | Path,
    out_dir: str | Path,
    *,
    model: str,
    overrides: list[str] | None = None,
    seeds: int = 1,
    vocab_dir: str | Path | None = None,
    tokens_dir: str | Path | None = None,
    replicas: int = 1,
    pvc_claim: str = "",
    job_options: dict[str, Any] | None = None,
    tracking: StageTracking | None = None,
) -> dict[str, Any]:
    """Train ``model`` (``gr`` or a baseline) for each seed into
    ``out_dir/seed<k>``. GR uses the vocabulary and token sequences of the earlier stages.

    With ``replicas > 1`` GR trains as a Kubeflow PyTorchJob of that many pods sharing the
    ReadWriteMany claim ``pvc_claim`` (mounted here too); ``job_options`` go to
    ``grmodel.k8s.pytorchjob.run_pytorchjob`` (``api``, ``local_mount``, ``gpus_per_replica``...).
    """
    stage = StageRun(f"train_{model}", tracking)
    data = Path(processed)
    plan = model_plan(data, [model], overrides, seeds)
    if replicas > 1 and (model != GR or not pvc_claim):
        raise StageError(f"train_replicas={replicas}: only GR trains as a PyTorchJob, and it needs a"
                         " ReadWriteMany claim shared with the job (compile with"
                         " `grmodel pipeline compile --train-pvc CLAIM`)")
    label_state = targets = None
    if model == GR:
        if vocab_dir is None or tokens_dir is None:
            raise StageError("training GR needs the build_vocab and encode_labels outputs")
        config = plan.runs[0][2]
        label_state = read_vocabulary(vocab_dir, config, data)
        labels = read_labels(data, "train", config.data.label_column, config.data.max_train_rows)
        targets = {"tokens": read_tokens(tokens_dir, labels)}
    fingerprint = dataset_fingerprint(data)
    metrics, histories, params = {}, {}, {model: plan.runs[0][2].to_dict()}
    with stage.output(out_dir) as tmp:
        stage.live.log_params(params)  # the config is on show while it trains
        for row, seed, config in plan.runs:
            log.info("training %s (%s), seed %d", row.name, row.model_name, seed)
            prefix, ended = f"seed{seed}.", {}

            def on_epoch(epoch: dict[str, Any], prefix: str = prefix, ended: dict = ended) -> None:
                ended[epoch["epoch"]] = time.time()
                stage.live.log_epoch(epoch, prefix)

            if replicas > 1:
                record = _train_as_pytorchjob(config, data, tmp / f"seed{seed}", fingerprint,
                                              label_state, replicas, pvc_claim, job_options or {})
            else:
                record = train_or_resume(config, tmp / f"seed{seed}", fingerprint, label_state,
                                         targets, on_epoch=on_epoch)
            if not ended:  # trained elsewhere (a PyTorchJob) or reused: its curves now
                for epoch in record["history"]:
                    stage.live.log_epoch(epoch, prefix)
            histories[prefix] = [{**h, **({EPOCH_TIME: ended[h["epoch"]]} if h["epoch"] in ended else {})}
                                 for h in record["history"]]
            metrics |= {f"{prefix}best_valid_{k}": float(v) for k, v in record["best_valid"].items()}
            metrics[f"{prefix}samples_per_second"] = float(record["samples_per_second"])
        stage.record(params=params, metrics=metrics, histories=histories)
    return {"model": model, "seeds": plan.seeds, **metrics}


def _train_as_pytorchjob(config: Any, data: Path, model_dir: Path, fingerprint: str,
                         label_state: dict[str, Any] | None, replicas: int, pvc_claim: str,
                         options: dict[str, Any]) -> dict[str, Any]:
    """Stage the data and vocabulary on the shared claim, run the PyTorchJob, and keep its model
    with the same run record an in-pod training writes."""
    options = dict(options)
    claim = SharedClaim.from_options(pvc_claim, options)
    job_dir = f"grmodel/{fingerprint[:12]}-{pytorchjob.config_digest(config)[:12]}"
    data_dir = claim.stage(job_dir, {"processed": data})["processed"]
    label_state_path = claim.in_pods(f"{job_dir}/{LABEL_STATE_FILE}")
    write_json_atomic(claim.local(label_state_path), label_state)
    started = time.perf_counter()
    job_model = pytorchjob.run_pytorchjob(
        config, replicas=replicas, pvc_claim=claim.name, data_dir=data_dir,
        out_dir=claim.in_pods(f"{job_dir}/model"), label_state_path=label_state_path,
        local_mount=claim.here, mount_path=claim.mount_path,
        namespace=options.pop("namespace", None) or pod_namespace(), **options)
    shutil.copytree(job_model, model_dir)
    meta = json.loads((model_dir / META_FILE).read_text())
    seconds = time.perf_counter() - started
    speeds = [h["samples_per_second"] for h in meta["history"] if "samples_per_second" in h]
    result = TrainResult(model_dir, meta["epoch"], meta["best_valid"], meta["history"],
                         train_seconds=seconds,
                         samples_per_second=float(np.mean(speeds)) if speeds else 0.0)
    return write_training_record(result, config, fingerprint, seconds, replicas=replicas)

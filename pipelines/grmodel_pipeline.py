"""The grmodel pipeline: data → validation → drift → vocabulary → tokens → training →
evaluation → registration, with the MLflow parent run closed by an exit handler.

Compiled to ``pipelines/grmodel_pipeline.yaml`` by ``grmodel pipeline compile``; run locally by
``grmodel pipeline run --local`` and on Kubeflow by ``grmodel pipeline submit|schedule``.
``build_pipeline(train_pvc=CLAIM)`` (``grmodel pipeline compile --train-pvc CLAIM``) adds the
ReadWriteMany claim that multi-replica GR training (``train_replicas > 1``, a PyTorchJob)
shares with the train step; the default pipeline trains GR on the train step's own GPU.
Parameters and defaults: ``grmodel.pipeline.params.PipelineParams``. Every stage after the
fetch takes the resolved data version as an input, so Kubeflow's cache never serves a step
computed on other data.
"""

from typing import Any

from kfp import dsl, kubernetes

from components.build_vocab import build_vocab
from components.check_drift import check_drift
from components.close_tracking import close_tracking
from components.encode_labels import encode_labels
from components.evaluate import evaluate
from components.fetch_data import fetch_data
from components.ingest import ingest
from components.register import register
from components.train import train_baseline, train_gr
from components.validate import validate_processed, validate_raw
from grmodel.k8s.claim import DEFAULT_MOUNT
from grmodel.pipeline.params import PipelineParams

PIPELINE_NAME = "grmodel-gr"
_D = PipelineParams()

# Requests per stage kind on a cluster (ignored by local runs). GR trains on one GPU.
LIGHT = {"cpu": "1", "memory": "4G"}
DATA = {"cpu": "2", "memory": "8G"}
TRAIN_CPU = {"cpu": "4", "memory": "16G"}
TRAIN_GPU = {"cpu": "8", "memory": "32G", "accelerator": "nvidia.com/gpu", "gpus": 1}
# No step sets Kubeflow retries: Kubeflow retries a failed task whatever failed, and the
# failures here are deterministic (a failed validation, a data error, a collapsed model, a gate
# that cannot judge): the same inputs fail the same way, so they fail the run at once. After a
# transient fault (a lost node, MLflow or the data remote down), rerun: finished steps come
# from Kubeflow's cache.
# Credentials for the DVC remote, MLflow and its artifact store, read by every step from an
# optional Kubernetes Secret (absent secret or key: the variable is unset). Create it with
# `kubectl create secret generic grmodel-credentials --from-literal=AWS_ACCESS_KEY_ID=...`.
CREDENTIALS_SECRET = "grmodel-credentials"  # noqa: S105 - a Secret's name, not its value
CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                   "AWS_DEFAULT_REGION", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_TOKEN",
                   "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def _on_cluster(task: Any, spec: dict[str, Any]) -> Any:
    """What a step gets on Kubernetes (a local run ignores it): requests, GPU and the
    credentials secret."""
    kubernetes.use_secret_as_env(task, secret_name=CREDENTIALS_SECRET,
                                 secret_key_to_env={k: k for k in CREDENTIAL_KEYS}, optional=True)
    task.set_cpu_request(spec["cpu"]).set_memory_request(spec["memory"])
    task.set_memory_limit(spec["memory"])
    if "accelerator" in spec:
        task.set_accelerator_type(spec["accelerator"]).set_accelerator_limit(spec["gpus"])
    return task


def build_pipeline(train_pvc: str | None = None, spark_pvc: str | None = None,
                   scheduled: bool = True) -> Any:
    """The pipeline; with ``train_pvc`` its GR step mounts that claim for PyTorchJobs, with
    ``spark_pvc`` its ingest, vocabulary and encode steps mount that claim and, with
    engine=spark, run as SparkApplications. ``scheduled``: the fetch takes KFP's scheduled
    time of the run (``dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER``); kfp.local 2.17
    cannot resolve that placeholder, so a local run passes "" (a windowed local run without
    ``as_of`` is as of the day before it starts)."""
    scheduled_time = dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER if scheduled else ""

    @dsl.pipeline(name=PIPELINE_NAME, description="Generative Regression watch-time model: train,"
                  " evaluate against CREAD and TPM, register and gate in MLflow")
    def grmodel_pipeline(
        data_source: str = _D.data_source,
        data_repo: str = _D.data_repo,
        data_version: str = _D.data_version,
        preset: str = _D.preset,
        data_seed: int = _D.data_seed,
        as_of: str = _D.as_of,
        window_days: int = _D.window_days,
        snapshot_remote: str = _D.snapshot_remote,
        split: str = _D.split,
        label_mode: str = _D.label_mode,
        engine: str = _D.engine,
        overrides: list = _D.overrides,
        baselines: list = _D.baselines,
        seeds: int = _D.seeds,
        train_replicas: int = _D.train_replicas,
        min_mae_rel_improvement: float = _D.min_mae_rel_improvement,
        max_xauc_drop: float = _D.max_xauc_drop,
        require_beats_baselines: list = _D.require_beats_baselines,
        max_champion_decay: float = _D.max_champion_decay,
        drift_policy: str = _D.drift_policy,
        drift_max_kl: float = _D.drift_max_kl,
        drift_quantile_tolerance: float = _D.drift_quantile_tolerance,
        drift_max_unseen: float = _D.drift_max_unseen,
        drift_false_alarm: float = _D.drift_false_alarm,
        mlflow_tracking_uri: str = _D.mlflow_tracking_uri,
        mlflow_experiment: str = _D.mlflow_experiment,
        mlflow_artifact_root: str = _D.mlflow_artifact_root,
        registered_model_name: str = _D.registered_model_name,
    ) -> None:
        # Stages log their own MLflow runs; the run id is not their input, or Kubeflow could
        # never serve them from its cache. The uncached register and exit steps take it.
        stage = {"tracking_uri": mlflow_tracking_uri, "mlflow_experiment": mlflow_experiment,
                 "mlflow_artifact_root": mlflow_artifact_root}
        tracking = {**stage, "pipeline_run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                    "pipeline_name": PIPELINE_NAME}
        closing = close_tracking(**tracking).set_caching_options(False)
        _on_cluster(closing, LIGHT)

        with dsl.ExitHandler(closing, name="grmodel-run"):
            # Never cached, so it may take the run's id: it opens the MLflow parent run, named
            # with the version it resolved, as soon as it has it.
            fetched = fetch_data(source=data_source, data_version=data_version, data_repo=data_repo,
                                 preset=preset, data_seed=data_seed, as_of=as_of,
                                 window_days=window_days, snapshot_remote=snapshot_remote,
                                 scheduled_time=scheduled_time,
                                 **tracking)
            # Always re-read and verified (data_version "" means "what data.dvc records at the
            # repository's head now"; as_of "" the day before the scheduled time); the steps after
            # it are cached on the resolved version (and day) they take as inputs.
            _on_cluster(fetched.set_caching_options(False), DATA)
            version = fetched.outputs["data_version"]
            raw = fetched.outputs["raw"]

            raw_check = validate_raw(data=raw, data_version=version, **stage)
            _on_cluster(raw_check, DATA)

            spark = {"engine": engine, "spark_pvc": spark_pvc or ""}
            ingested = ingest(raw=raw, data_version=version, split=split, label_mode=label_mode,
                              as_of=fetched.outputs["as_of"], window_days=window_days, **spark,
                              **stage)
            _on_cluster(ingested.after(raw_check), DATA)
            processed = ingested.outputs["processed"]

            processed_check = validate_processed(data=processed, data_version=version,
                                                 **stage)
            _on_cluster(processed_check, DATA)

            # Never cached: the champion it compares with moves between runs on the same data.
            drift = check_drift(processed=processed, data_version=version,
                                model_name=registered_model_name, drift_policy=drift_policy,
                                drift_max_kl=drift_max_kl,
                                drift_quantile_tolerance=drift_quantile_tolerance,
                                drift_max_unseen=drift_max_unseen,
                                drift_false_alarm=drift_false_alarm, **stage)
            _on_cluster(drift.after(processed_check).set_caching_options(False), DATA)

            vocab = build_vocab(processed=processed, data_version=version, overrides=overrides,
                                **spark, **stage)
            _on_cluster(vocab.after(drift), LIGHT)
            tokens = encode_labels(processed=processed, vocabulary=vocab.outputs["vocabulary"],
                                   data_version=version, overrides=overrides, **spark, **stage)
            _on_cluster(tokens, DATA)
            if spark_pvc:
                for task in (ingested, vocab, tokens):
                    kubernetes.mount_pvc(task, pvc_name=spark_pvc, mount_path=DEFAULT_MOUNT)

            gr = train_gr(processed=processed, vocabulary=vocab.outputs["vocabulary"],
                          tokens=tokens.outputs["tokens"], data_version=version, overrides=overrides,
                          seeds=seeds, train_replicas=train_replicas, train_pvc=train_pvc or "",
                          **stage)
            _on_cluster(gr, TRAIN_GPU)
            if train_pvc:
                kubernetes.mount_pvc(gr, pvc_name=train_pvc, mount_path=DEFAULT_MOUNT)

            with dsl.ParallelFor(baselines) as baseline:
                trained = train_baseline(processed=processed, baseline=baseline,
                                         overrides=overrides, seeds=seeds, **stage)
                _on_cluster(trained.after(drift), TRAIN_CPU)

            evaluated = evaluate(processed=processed, gr_model=gr.outputs["model"],
                                 baseline_models=dsl.Collected(trained.outputs["model"]),
                                 data_version=version, overrides=overrides, seeds=seeds, **stage)
            _on_cluster(evaluated, DATA)

            registered = register(
                raw=raw, raw_validation=raw_check.outputs["report"], processed=processed,
                processed_validation=processed_check.outputs["report"],
                drift_report=drift.outputs["report"],
                vocabulary=vocab.outputs["vocabulary"], tokens=tokens.outputs["tokens"],
                gr_model=gr.outputs["model"], baseline_models=dsl.Collected(trained.outputs["model"]),
                evaluation=evaluated.outputs["evaluation"], data_version=version,
                model_name=registered_model_name, min_mae_rel_improvement=min_mae_rel_improvement,
                max_xauc_drop=max_xauc_drop, require_beats_baselines=require_beats_baselines,
                max_champion_decay=max_champion_decay, **tracking,
            )
            _on_cluster(registered.set_caching_options(False), DATA)

    return grmodel_pipeline


grmodel_pipeline = build_pipeline()

"""Stage 7: training. GR on the GPU image (optionally as a multi-replica PyTorchJob) and each
baseline on the runtime image."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from grmodel.k8s.images import gpu_image, runtime_image


@dsl.component(base_image=gpu_image(), install_kfp_package=False)
def train_gr(
    processed: Input[Dataset],
    vocabulary: Input[Artifact],
    tokens: Input[Dataset],
    data_version: str,
    overrides: list,
    seeds: int,
    train_replicas: int,
    train_pvc: str,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Train GR for each seed with the vocabulary and token sequences of the earlier stages:
    here on this pod's GPU, or with ``train_replicas > 1`` as a PyTorchJob of that many pods
    sharing the claim ``train_pvc`` (mounted here by the pipeline compiled with it)."""
    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.stages.train import train

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    result = train(processed.path, model.path, model="gr", overrides=overrides, seeds=seeds,
                   vocab_dir=vocabulary.path, tokens_dir=tokens.path,
                   replicas=train_replicas, pvc_claim=train_pvc,
                   tracking=tracking)
    model.metadata.update({"row": "gr", "data_version": data_version})
    for name, value in result.items():
        if isinstance(value, float):
            metrics.log_metric(f"gr.{name}", value)


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def train_baseline(
    processed: Input[Dataset],
    baseline: str,
    overrides: list,
    seeds: int,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    model: Output[Model],
):
    """Train one baseline (cread, tpm, d2q, wlr or vr) for each seed.

    The data version comes from the dataset's metadata (ingest writes it), not a parameter:
    kfp.local replaces every upstream task output passed into a ParallelFor body with the loop
    item, so a ``data_version`` parameter arrived as "cread" or "tpm" in local runs."""
    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.stages.train import train

    data_version = processed.metadata["data_version"]
    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    train(processed.path, model.path, model=baseline, overrides=overrides, seeds=seeds,
          tracking=tracking)
    model.metadata.update({"row": baseline, "data_version": data_version})

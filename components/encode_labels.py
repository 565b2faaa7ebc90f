"""Stage 6: greedy label encoding into token sequences, gated by the token suite."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from grmodel.k8s.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def encode_labels(
    processed: Input[Dataset],
    vocabulary: Input[Artifact],
    data_version: str,
    overrides: list,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    tokens: Output[Dataset],
    engine: str = "pandas",
    spark_pvc: str = "",
):
    """Encode every training label with ``vocabulary``; fail when a sequence is wrong. Engine
    spark encodes in Spark (a SparkApplication when the step mounts ``spark_pvc``)."""
    from grmodel.pipeline import spark_stages
    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.stages.labels import encode_labels

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    if engine == "spark" and spark_pvc:
        result = spark_stages.encode_labels(processed.path, vocabulary.path, tokens.path,
                                            overrides, tracking, spark_pvc)
    else:
        result = encode_labels(processed.path, vocabulary.path, tokens.path, overrides, tracking,
                               engine=engine)
    tokens.metadata.update({"data_version": data_version, **result})

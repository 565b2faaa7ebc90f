"""Stage 5: GR's dynamic-quantile vocabulary from the training labels."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from grmodel.k8s.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def build_vocab(
    processed: Input[Dataset],
    data_version: str,
    overrides: list,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    vocabulary: Output[Artifact],
    engine: str = "pandas",
    spark_pvc: str = "",
):
    """Build GR's vocabulary (its label state) with GR's config after ``overrides``; engine
    spark counts the labels in Spark (a SparkApplication when the step mounts ``spark_pvc``)."""
    from grmodel.pipeline import spark_stages
    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.stages.labels import build_vocab

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    if engine == "spark" and spark_pvc:
        result = spark_stages.build_vocab(processed.path, vocabulary.path, overrides, tracking,
                                          spark_pvc)
    else:
        result = build_vocab(processed.path, vocabulary.path, overrides, tracking, engine=engine)
    vocabulary.metadata.update({"data_version": data_version, **result})

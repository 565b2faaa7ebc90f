"""Stage 3: raw KuaiRec files into the processed train/valid/test tables."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from grmodel.k8s.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def ingest(
    raw: Input[Dataset],
    data_version: str,
    split: str,
    label_mode: str,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    processed: Output[Dataset],
    engine: str = "pandas",
    spark_pvc: str = "",
    as_of: str = "",
    window_days: int = 0,
):
    """Ingest ``raw`` with the given split protocol and label mode into ``processed`` (a
    windowed run, ``window_days > 0``: forward, as of the fetch's resolved ``as_of``); engine
    spark runs Spark here, or as a SparkApplication when the step mounts ``spark_pvc``."""
    from grmodel.pipeline import spark_stages
    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.stages.data import ingest, ingest_options

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    options = ingest_options(split, label_mode, as_of, window_days)
    if engine == "spark" and spark_pvc:
        result = spark_stages.ingest(raw.path, processed.path, options, tracking, spark_pvc)
    else:
        result = ingest(raw.path, processed.path, options, tracking, engine=engine)
    processed.metadata.update({"data_version": data_version, **result["rows"]})

"""Stages 2 and 4: the great-expectations gate on the raw files and on the processed tables.

Two components, so the tasks are named ``validate-raw`` and ``validate-processed`` (a task's
name is its component's) in the Kubeflow UI, the local run's folders and the docs."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from grmodel.k8s.images import runtime_image


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def validate_raw(
    data: Input[Dataset],
    data_version: str,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    report: Output[Artifact],
    report_html: Output[HTML],
    checks: Output[Metrics],
) -> str:
    """Validate the raw files of a fetch; fail the task when a check fails, which stops every
    downstream stage. The JSON, Markdown and HTML reports go to ``report``."""
    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.stages.data import validation_gate

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    return validation_gate(data.path, "raw", data_version, report, report_html.path, checks,
                           tracking)


@dsl.component(base_image=runtime_image(), install_kfp_package=False)
def validate_processed(
    data: Input[Dataset],
    data_version: str,
    tracking_uri: str,
    mlflow_experiment: str,
    mlflow_artifact_root: str,
    report: Output[Artifact],
    report_html: Output[HTML],
    checks: Output[Metrics],
) -> str:
    """Validate the processed tables of an ingest, as :func:`validate_raw` does the raw files."""
    from grmodel.pipeline.live import StageTracking
    from grmodel.pipeline.stages.data import validation_gate

    tracking = StageTracking(tracking_uri, mlflow_experiment, mlflow_artifact_root, data_version)
    return validation_gate(data.path, "processed", data_version, report, report_html.path,
                           checks, tracking)
